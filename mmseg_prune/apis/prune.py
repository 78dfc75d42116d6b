"""Save a pruned segmentor as an mmseg model: weights, config and report."""
import datetime
import json
import os.path as osp
from typing import Dict

import torch
from mmengine.config import Config

from ..models.builder import (config_dataset_meta, dense_reference,
                              pruned_config)
from ..pruner import PruneResult
from ..structure import extract_architecture, has_split_attention
from ..utils.io import atomic_file_set
from ..version import __version__


OUTPUTS = dict(checkpoint='pruned.pth', config='pruned_config.py',
               report='pruning_report.json', figure='pruning_report.png')


def _stage_flops(result: PruneResult) -> Dict[str, tuple]:
    """(dense, pruned) FLOPs of the backbone's stages and the other
    top-level modules."""
    stages = {}
    for name, flops in result.dense.by_module.items():
        top = name.count('.') == 0 and name not in ('', 'backbone')
        if top or (name.startswith('backbone.') and name.count('.') == 1):
            if flops > 0:
                stages[name] = (flops, result.pruned.by_module.get(name, 0))
    return stages


def save_pruned(result: PruneResult, cfg: Config, work_dir: str,
                report: dict) -> Dict[str, str]:
    """Write ``pruned.pth``, ``pruned_config.py``, ``pruning_report.json``
    and ``pruning_report.png`` into ``work_dir`` as one set.

    The set is written to a temporary folder and swapped in at once
    (:func:`~mmseg_prune.utils.io.atomic_file_set`): a crash leaves the
    previous set whole, never a new checkpoint beside an old config. The
    pruned structure is recorded against the dense architecture of ``cfg``,
    so a model pruned twice still rebuilds from the original dense config.
    The checkpoint's ``meta['dataset_meta']`` (classes, palette) is the
    dense checkpoint's, else that of the config's dataset.

    Returns:
        dict[str, str]: Kind -> path of each file written.
    """
    from ..analysis.plots import write_report_figure
    reference = dense_reference(cfg, result.model)
    architecture = extract_architecture(reference, result.model)
    paths = {kind: osp.join(work_dir, name) for kind, name in OUTPUTS.items()}
    meta = dict(
        pruned_structure=architecture,
        mmseg_prune_version=__version__,
        time=datetime.datetime.now().isoformat(timespec='seconds'),
        pruning=dict(report, layers=None))
    # Classes and palette, as in every checkpoint mmseg's runner writes:
    # the dense checkpoint's, else the config's dataset's.
    dataset_meta = getattr(result.model, 'dataset_meta', None) or \
        config_dataset_meta(cfg)
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    # Relative to the config, so the work dir can be moved whole.
    out_cfg = pruned_config(cfg, architecture,
                            '{{ fileDirname }}/' + OUTPUTS['checkpoint'],
                            split_attention=has_split_attention(reference))
    config_text = out_cfg.pretty_text
    replaced = osp.isfile(paths['checkpoint'])
    with atomic_file_set(work_dir) as tmp:
        torch.save(dict(meta=meta, state_dict=result.model.state_dict()),
                   osp.join(tmp, OUTPUTS['checkpoint']))
        with open(osp.join(tmp, OUTPUTS['config']), 'w') as f:
            f.write(config_text)
        with open(osp.join(tmp, OUTPUTS['report']), 'w') as f:
            f.write(json.dumps(report, indent=2))
        write_report_figure(osp.join(tmp, OUTPUTS['figure']), report,
                            _stage_flops(result))
    if replaced:
        print(f'replaced the previous pruned model in {work_dir}')
    return paths


def build_report(result: PruneResult, criterion_name: str,
                 reduction: float) -> dict:
    """The ``pruning_report.json`` content: ``reduction`` is the target,
    of the FLOPs or (for a latency budget) of the latency."""
    report = dict(
        input_shape=list(result.dense.input_shape),
        criterion=criterion_name,
        flops_reduction=None if result.latency else reduction,
        achieved_reduction=round(result.achieved_reduction, 6),
        dense=dict(flops=result.dense.flops, params=result.dense.params),
        pruned=dict(flops=result.pruned.flops, params=result.pruned.params),
        layers=result.layers)
    if result.latency:
        report['latency_reduction'] = reduction
        report['latency'] = result.latency
    return report
