"""Building segmentors from configs, loading their weights safely, and the
config of a pruned model."""
import copy
import warnings
from typing import Optional

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from ..structure import (check_segmentor, encode_architecture,
                         has_split_attention, split_attention)
from ..utils.cli import quiet_logger
from ..utils.errors import PruneError
from ..utils.io import readable_file
from ..utils.safe_globals import load_checkpoint_file
from .mtp_segmentor import mtp_wrapper
from .pruned_segmentor import strip_pretrained


def trained_segmentor(model: nn.Module) -> nn.Module:
    """The segmentor a runner trains, inside DDP and MTP wrappers."""
    wrapper = mtp_wrapper(model)
    if wrapper is not None:
        return wrapper.segmentor
    return model.module if is_model_wrapper(model) else model


def dense_architecture(cfg: Config) -> dict:
    """The dense segmentor config, also for a config of a pruned model or
    of MTP's wrapper."""
    model = cfg.model
    if model.get('type') == 'MTPSegmentor':
        model = model.segmentor
    model = copy.deepcopy(dict(model.to_dict() if hasattr(model, 'to_dict')
                               else model))
    if model.get('type') == 'PrunedSegmentor':
        fields = {k: v for k, v in model.items() if k not in (
            'type', 'segmentor_type', 'architecture', 'pruned_structure',
            'pruned_weights', 'split_attention')}
        if model.get('architecture') is not None:  # an older pruned config
            return dict(model['architecture'], **fields)
        return dict(fields, type=model['segmentor_type'])
    return model


def build_segmentor(cfg: Config, checkpoint: Optional[str] = None,
                    dense: bool = False,
                    allow_partial: bool = False) -> nn.Module:
    """Build the config's segmentor on the CPU, SyncBN reverted to BN.

    Args:
        cfg (Config): The config (dense or pruned).
        checkpoint (str, optional): Weights to load. Without them the model
            keeps its initial weights (a pretrained backbone is not fetched).
        dense (bool): Build the dense architecture of a pruned config.
        allow_partial (bool): Load a checkpoint that does not hold every
            tensor (see :func:`load_weights`).

    Returns:
        nn.Module: The segmentor, in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    # MTP's wrapper is a training-time view: the model is its segmentor.
    model_cfg = dense_architecture(cfg) if dense or \
        cfg.model.get('type') == 'MTPSegmentor' else cfg.model
    try:
        model = MODELS.build(strip_pretrained(model_cfg))
    except PruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise PruneError(f'cannot build the config\'s model: '
                         f'{type(exc).__name__}: {exc}') from exc
    check_segmentor(model)
    model = revert_sync_batchnorm(model)
    if checkpoint is not None:
        meta = load_weights(model, checkpoint, cfg, allow_partial)
        if meta.get('dataset_meta'):
            # As mmseg's init_model keeps it; a pruned copy carries it on.
            model.dataset_meta = meta['dataset_meta']
    else:
        with warnings.catch_warnings(), quiet_logger():
            warnings.simplefilter('ignore')
            model.init_weights()
    return model.eval()


def dense_reference(cfg: Config, pruned: nn.Module) -> nn.Module:
    """The dense architecture of ``cfg`` that ``pruned``'s structure is
    recorded against: with split attention where ``pruned`` has it."""
    reference = build_segmentor(cfg, dense=True)
    if has_split_attention(pruned):
        split_attention(reference)
    return reference


def load_weights(model: nn.Module, checkpoint: str, cfg: Config,
                 allow_partial: bool = False) -> dict:
    """Load ``checkpoint`` into ``model``, refusing weights that do not fit.

    Every tensor of the model must be in the checkpoint with its shape, and
    the checkpoint must hold no other tensor: a checkpoint of another model
    (or a backbone-only one) would otherwise leave layers at random.

    Args:
        model (nn.Module): The model.
        checkpoint (str): Path of the checkpoint.
        cfg (Config): The model's config (dense or pruned).
        allow_partial (bool): Load what fits and print each tensor left as
            it was, instead of refusing. Default: False.

    Returns:
        dict: The checkpoint's meta.
    """
    readable_file(checkpoint, 'checkpoint')
    try:
        ckpt = load_checkpoint_file(checkpoint, map_location='cpu')
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise PruneError(f'cannot read checkpoint "{checkpoint}": '
                         f'{type(exc).__name__}: {exc}; pass a checkpoint '
                         'written by torch.save or MMEngine') from exc
    if not isinstance(ckpt, dict):
        raise PruneError(f'"{checkpoint}" is not a model checkpoint (it '
                         f'holds a {type(ckpt).__name__}, not a dict)')
    meta = ckpt.get('meta') or {}
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise PruneError(f'the state_dict of "{checkpoint}" is not a dict of '
                         'tensors; pass a model checkpoint')
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    is_pruned_cfg = cfg.model.get('type') == 'PrunedSegmentor'
    if 'pruned_structure' in meta and not is_pruned_cfg:
        raise PruneError(
            f'"{checkpoint}" holds a pruned model but the config is a dense '
            'one; pass the pruned_config.py written next to the checkpoint')
    own = model.state_dict()
    wrong = [(k, list(v.shape), list(own[k].shape)) for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise PruneError(
            f'checkpoint "{checkpoint}" does not fit the config\'s model: '
            f'{len(wrong)} tensors differ in shape (e.g. {wrong[0][0]}: '
            f'checkpoint {wrong[0][1]}, model {wrong[0][2]}); pass the '
            'checkpoint trained with this config (for a pruned model, its '
            'pruned_config.py)')
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if (missing or unexpected) and not allow_partial:
        detail = '; '.join(
            f'{len(keys)} {what} (e.g. {", ".join(keys[:3])})'
            for what, keys in (('missing', missing),
                               ('unexpected', unexpected)) if keys)
        raise PruneError(
            f'checkpoint "{checkpoint}" does not fit the config\'s model: '
            f'{detail}; pass the checkpoint trained with this config, or '
            '--allow-partial-checkpoint to load what fits')
    for key in missing:
        print(f'not in the checkpoint, left as initialised: {key}')
    model.load_state_dict(state, strict=False)
    return meta


def config_dataset_meta(cfg: Config) -> Optional[dict]:
    """Classes and palette of the config's dataset, as mmseg's runner
    stores them in a checkpoint's ``meta['dataset_meta']``.

    The dataset type's ``METAINFO`` updated by the config's ``metainfo``,
    looked up through dataset wrappers (ConcatDataset, RepeatDataset);
    None when the config names no known dataset. Nothing is read from disk.
    """
    from mmseg.registry import DATASETS
    for split in ('train_dataloader', 'test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(split) or {}).get('dataset')
        while isinstance(dataset, dict) and ('dataset' in dataset
                                             or 'datasets' in dataset):
            dataset = dataset.get('dataset') or dataset['datasets'][0]
        if not isinstance(dataset, dict):
            continue
        dataset_type = DATASETS.get(dataset.get('type')) \
            if isinstance(dataset.get('type'), str) else dataset.get('type')
        if dataset_type is None:
            continue
        meta = copy.deepcopy(dict(getattr(dataset_type, 'METAINFO', {})))
        meta.update(copy.deepcopy(dict(dataset.get('metainfo') or {})))
        if meta.get('classes'):
            return meta
    return None


def pruned_config(cfg: Config, architecture: dict,
                  checkpoint: Optional[str],
                  split_attention: bool = False) -> Config:
    """The config of a pruned model: ``cfg`` with a ``PrunedSegmentor``.

    Args:
        cfg (Config): The config the model was pruned from.
        architecture (dict): The pruned architecture.
        checkpoint (str | None): Path of the pruned weights, which the model
            loads when it is built (``model.pruned_weights``; MMEngine
            replaces ``{{ fileDirname }}`` with the config's folder); None
            when a checkpoint is always given (tools/test.py, ``--resume``).
        split_attention (bool): The pruned model's attention layers are
            :class:`~mmseg_prune.structure.SplitHeadAttention`.
    """
    out = copy.deepcopy(cfg)
    dense = dense_architecture(cfg)
    # The dense model's fields stay where tools look for them.
    out.model = dict(
        type='PrunedSegmentor', segmentor_type=dense.pop('type'), **dense,
        pruned_structure=encode_architecture(architecture),
        pruned_weights=checkpoint)
    if split_attention:
        out.model['split_attention'] = True
    imports = dict(out.get('custom_imports') or {})
    names = list(imports.get('imports', []))
    if 'mmseg_prune' not in names:
        names.append('mmseg_prune')
    out.custom_imports = dict(imports, imports=names,
                              allow_failed_imports=False)
    out.load_from = None
    out.resume = False
    out.pop('pruning', None)
    # The pruning hooks have done their work; fine-tuning is plain training.
    out.custom_hooks = [
        h for h in out.get('custom_hooks', [])
        if h.get('type') not in ('PruningHook', 'MTPHook')
    ]
    return out
