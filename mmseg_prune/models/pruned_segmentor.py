"""Build a pruned segmentor from its dense config and pruned architecture."""
import copy
import os.path as osp

from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from ..structure import attention
from ..structure.architecture import (apply_architecture,
                                      decode_architecture)
from ..utils.errors import PruneError


def strip_pretrained(cfg):
    """Drop ``pretrained`` and ``init_cfg=dict(type='Pretrained')`` entries.

    Dense pretrained weights cannot load into pruned layers, and the pruned
    weights come from the pruned checkpoint anyway.
    """
    if isinstance(cfg, dict):
        out = {}
        for key, value in cfg.items():
            if key == 'pretrained':
                value = None
            elif key == 'init_cfg' and isinstance(value, dict) and \
                    value.get('type') == 'Pretrained':
                value = None
            out[key] = strip_pretrained(value)
        return ConfigDict(out)
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(strip_pretrained(v) for v in cfg)
    return cfg


def _check_loaded_shapes(pruned_modules):
    """A load pre-hook refusing weights of another architecture."""

    def hook(module, state_dict, prefix, *args):
        own = module.state_dict()
        wrong = [(k, list(v.shape), list(own[k].shape))
                 for k, v in state_dict.items()
                 if k in own and hasattr(v, 'shape')
                 and v.shape != own[k].shape
                 and k.rsplit('.', 1)[0] in pruned_modules]
        if wrong:
            key, got, want = wrong[0]
            raise PruneError(
                f'the checkpoint does not fit this pruned model: '
                f'{len(wrong)} pruned tensors differ in shape (e.g. {key}: '
                f'checkpoint {got}, model {want}); load the pruned.pth '
                'written together with this pruned_config.py')

    return hook


def _load_pruned_weights(model, path):
    """Start from the pruned weights; the runner then skips init_weights.

    MMEngine resumes from ``load_from`` whenever it is set, so the pruned
    config cannot use it for the pruned weights without breaking
    ``--resume``; loading them here keeps both working.
    """
    from mmengine.model import BaseModule

    from ..utils.safe_globals import load_checkpoint_file
    if not osp.isfile(path):
        raise PruneError(
            f'pruned weights "{path}" not found (was pruned_config.py moved '
            'without its pruned.pth?). Pass --cfg-options '
            'model.pruned_weights=PATH/pruned.pth, or '
            'model.pruned_weights=None when a checkpoint is loaded anyway '
            '(test.py CHECKPOINT, --resume) or to start from initial weights')
    try:
        state = load_checkpoint_file(path, map_location='cpu')
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise PruneError(f'cannot read pruned weights "{path}": '
                         f'{type(exc).__name__}: {exc}') from exc
    if not isinstance(state, dict):
        raise PruneError(f'pruned weights "{path}" are not a checkpoint')
    model.load_state_dict(state.get('state_dict', state))
    for module in model.modules():
        if isinstance(module, BaseModule):
            module._is_init = True


@MODELS.register_module()
def PrunedSegmentor(pruned_structure, pruned_weights=None,
                    segmentor_type=None, architecture=None,
                    split_attention=False, **fields):
    """Build the dense segmentor and resize it to ``pruned_structure``.

    The result is the plain segmentor of the dense config (an
    ``EncoderDecoder``, say), with smaller layers, so its state dict,
    training and inference are those of any mmseg model.

    A pruned config keeps the dense model's fields where the dense config
    has them (``model.backbone``, ``model.decode_head``, ``model.test_cfg``,
    ...), so tools that read them (mmseg's, mmdeploy's) find them; only
    ``model.type`` changes, the dense type moving to ``segmentor_type``.

    Args:
        pruned_structure (dict): The pruned architecture, as recorded by
            :func:`mmseg_prune.structure.extract_architecture` (or encoded
            by :func:`~mmseg_prune.structure.encode_architecture`).
        pruned_weights (str, optional): Checkpoint loaded when the model is
            built, so that fine-tuning starts from the pruned weights.
            ``load_from``, ``--resume`` and test checkpoints load over it.
        segmentor_type (str): The dense model's ``type``.
        architecture (dict, optional): The whole dense model config, as
            older pruned configs give it; ``fields`` then override
            its keys (mmseg's ``init_model`` sets ``train_cfg`` and
            ``pretrained``, for example).
        split_attention (bool): Replace the ``nn.MultiheadAttention``
            layers by :class:`~mmseg_prune.structure.SplitHeadAttention`
            before resizing, as pruning did to prune heads.
        **fields: The dense model's other fields.

    Returns:
        nn.Module: The pruned segmentor.
    """
    if architecture is not None:
        if not isinstance(architecture, dict) or 'type' not in architecture:
            raise PruneError('PrunedSegmentor needs architecture=<the dense '
                             'model config dict>')
        cfg = dict(copy.deepcopy(dict(architecture)), **fields)
    elif segmentor_type is None:
        raise PruneError('PrunedSegmentor needs segmentor_type=<the dense '
                         "model's type> beside the dense model's fields")
    else:
        cfg = dict(copy.deepcopy(fields), type=segmentor_type)
    model = MODELS.build(strip_pretrained(cfg))
    if split_attention:
        attention.split_attention(model)
    pruned_structure = decode_architecture(pruned_structure)
    apply_architecture(model, pruned_structure)
    model._register_load_state_dict_pre_hook(
        _check_loaded_shapes(set(pruned_structure)), with_module=True)
    if pruned_weights:
        _load_pruned_weights(model, pruned_weights)
    return model
