"""A pruned model works with mmseg's own tools/test.py and tools/train.py."""
import os
import os.path as osp
import re
import subprocess
import sys

import mmseg
import pytest
import torch
from mmengine.config import Config

from mmseg_prune.utils.cli import run_cli

from tests.helpers import small_voc_config
from test_prune_tool import _tool

ROOT = osp.dirname(osp.dirname(osp.dirname(__file__)))
MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


@pytest.fixture(scope='module')
def pruned_voc(tmp_path_factory, demo_root):
    """FCN R18 (with an auxiliary head) on the generated VOC data at
    64x64, pruned by 50%."""
    tmp = tmp_path_factory.mktemp('voc')
    cfg = small_voc_config(demo_root, 64)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=2)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    dense = str(tmp / 'dense.py')
    cfg.pop('pruning')
    cfg.dump(dense)
    work_dir = str(tmp / 'pruned')
    assert run_cli(_tool('prune').main, [dense, '--work-dir', work_dir]) == 0
    return work_dir


def _run(script, *args):
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_mmseg_test_tool(pruned_voc, tmp_path):
    log = _run(osp.join(MMSEG_TOOLS, 'test.py'),
               osp.join(pruned_voc, 'pruned_config.py'),
               osp.join(pruned_voc, 'pruned.pth'), '--work-dir',
               str(tmp_path))
    # mmseg's per-class table lists the 21 VOC classes, then the means.
    from mmseg_prune.datasets import VOC_CLASSES
    classes = ('background', ) + VOC_CLASSES
    rows = [line for line in log.splitlines()
            if line.startswith('|') and line.split('|')[1].strip() in classes]
    assert len(rows) == len(classes) == 21
    match = re.search(r'mIoU: (\d+\.\d+)', log)
    assert match and 0 <= float(match.group(1)) <= 100


def test_train_then_resume(pruned_voc, tmp_path):
    config = osp.join(pruned_voc, 'pruned_config.py')
    work_dir = str(tmp_path)
    # The plugin's entry point (same as mmseg's, plugin preloaded) ...
    _run(osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir)
    assert {'iter_1.pth', 'iter_2.pth'} <= set(os.listdir(work_dir))
    # ... and MMEngine's checkpoint loads with torch's weights_only default.
    ckpt = torch.load(osp.join(work_dir, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2
    # mmseg's own train.py resumes it and goes on.
    log = _run(osp.join(MMSEG_TOOLS, 'train.py'), config, '--work-dir',
               work_dir, '--resume', '--cfg-options',
               'train_cfg.max_iters=3')
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'iter_3.pth' in os.listdir(work_dir)


def _outcome(script, *args):
    """Exit status and last line of output of one of mmseg's tools."""
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, lines[-1] if lines else ''


def test_mmseg_tools_get_as_far_as_on_the_dense_config(pruned_voc, tmp_path):
    """Tools that read cfg.model.decode_head or cfg.model.backbone find
    them in a pruned config; where mmseg's tool itself is broken on this
    stack, it stops at the same point for both."""
    dense = osp.join(osp.dirname(pruned_voc), 'dense.py')
    pruned = osp.join(pruned_voc, 'pruned_config.py')
    get_flops = osp.join(MMSEG_TOOLS, 'analysis_tools', 'get_flops.py')
    on_dense = _outcome(get_flops, dense, '--shape', '64', '64')
    on_pruned = _outcome(get_flops, pruned, '--shape', '64', '64')
    assert on_pruned == on_dense
    # mmseg 1.2.2's get_flops.py fails with mmengine 0.10.7, after reading
    # cfg.model.decode_head, where a pruned config used to stop.
    assert 'decode_head' not in on_pruned[1]
    # Its pytorch2torchscript.py is a 0.x leftover: it fails for both.
    script = osp.join(MMSEG_TOOLS, 'deployment', 'pytorch2torchscript.py')
    outcomes = [_outcome(script, config, '--shape', '64', '64',
                         '--output-file', str(tmp_path / f'{i}.pt'))
                for i, config in enumerate((dense, pruned))]
    assert outcomes[0] == outcomes[1]
    # benchmark.py times from the sixth image on: the generated val images
    # are repeated to reach it.
    benchmark = osp.join(MMSEG_TOOLS, 'analysis_tools', 'benchmark.py')
    for name, config, checkpoint in (
            ('dense', dense, osp.join(pruned_voc, 'missing.pth')),
            ('pruned', pruned, osp.join(pruned_voc, 'pruned.pth'))):
        cfg = Config.fromfile(config)
        cfg.test_dataloader.dataset = dict(
            type='RepeatDataset', times=8, dataset=cfg.test_dataloader.dataset)
        repeated = str(tmp_path / f'{name}.py')
        cfg.dump(repeated)
        log = _run(benchmark, repeated, checkpoint, '--work-dir',
                   str(tmp_path), '--log-interval', '1')
        assert re.search(r'Done image \[6\s*/ 200\], fps: \d', log), \
            log[-2000:]
