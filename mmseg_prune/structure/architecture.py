"""Record a pruned architecture as plain data and replay it on a new model.

A pruned architecture is a dict ``{module name: {'attrs': {...},
'shapes': {...}}}`` holding, for every module that pruning changed, the
integer attributes that differ from the dense model (``out_channels``,
``num_features``, ``groups``...) and the shapes of its own parameters and
buffers. It is plain data, so it can live in a config file (as one short string
per module, :func:`encode_architecture`) and in a checkpoint's meta, and
replaying it needs neither torch-pruning nor a trace.
"""
from typing import Dict

import torch
import torch.nn as nn

from ..utils.errors import PruneError

Architecture = Dict[str, Dict[str, Dict]]


def _int_attrs(module: nn.Module) -> Dict:
    """Integer and integer-tuple attributes of a module (its hyper-params)."""
    attrs = {}
    for key, value in vars(module).items():
        if key.startswith('_') or isinstance(value, bool):
            continue
        if isinstance(value, int) or (
                isinstance(value, (tuple, list)) and value
                and all(isinstance(v, int) and not isinstance(v, bool)
                        for v in value)):
            attrs[key] = value
    return attrs


def _tensor_shapes(module: nn.Module) -> Dict[str, list]:
    tensors = dict(module.named_parameters(recurse=False))
    tensors.update(
        (n, b) for n, b in module.named_buffers(recurse=False)
        if b is not None)
    return {name: list(t.shape) for name, t in tensors.items()}


def extract_architecture(dense: nn.Module, pruned: nn.Module) -> Architecture:
    """Describe how ``pruned`` differs from ``dense`` (same module names).

    Args:
        dense (nn.Module): The model before pruning.
        pruned (nn.Module): The same model after pruning.

    Returns:
        dict: The pruned architecture (see module docstring).
    """
    dense_modules = dict(dense.named_modules())
    architecture = {}
    for name, module in pruned.named_modules():
        before = dense_modules[name]
        shapes = _tensor_shapes(module)
        old_shapes = _tensor_shapes(before)
        changed_shapes = {k: v for k, v in shapes.items()
                          if old_shapes.get(k) != v}
        old_attrs = _int_attrs(before)
        changed_attrs = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in _int_attrs(module).items() if old_attrs.get(k) != v
        }
        if changed_shapes or changed_attrs:
            architecture[name] = dict(attrs=changed_attrs,
                                      shapes=changed_shapes)
    return architecture


def encode_architecture(architecture: Architecture) -> Dict[str, str]:
    """One short string per module, for config files.

    ``{'attrs': {'out_channels': 22, 'stride': [1, 1]}, 'shapes':
    {'weight': [22, 64, 3, 3]}}`` becomes ``'out_channels=22 stride=(1,1)
    weight:22x64x3x3'``. Configs are formatted by yapf whenever MMEngine
    prints or saves them (several times per training run), and the nested
    form of a ResNet's structure took seconds each time.
    """

    def attr(value):
        if isinstance(value, (list, tuple)):
            return '(' + ','.join(str(v) for v in value) + ')'
        return str(value)

    return {
        name: ' '.join(
            [f'{k}={attr(v)}' for k, v in spec.get('attrs', {}).items()] +
            [f'{k}:{"x".join(str(d) for d in shape)}'
             for k, shape in spec.get('shapes', {}).items()])
        for name, spec in architecture.items()
    }


def decode_architecture(architecture: Dict) -> Architecture:
    """The dict form of an architecture, from either form."""
    decoded = {}
    for name, spec in architecture.items():
        if not isinstance(spec, str):
            decoded[name] = spec
            continue
        attrs, shapes = {}, {}
        try:
            for token in spec.split():
                if '=' in token:
                    key, value = token.split('=', 1)
                    attrs[key] = [int(v) for v in value[1:-1].split(',')
                                  if v] if value.startswith('(') \
                        else int(value)
                else:
                    key, value = token.split(':', 1)
                    shapes[key] = [int(d) for d in value.split('x') if d]
        except ValueError as exc:
            raise PruneError(f'cannot read the pruned structure of module '
                             f'"{name}": "{spec}"; use the pruned_config.py '
                             'as written') from exc
        decoded[name] = dict(attrs=attrs, shapes=shapes)
    return decoded


def apply_architecture(model: nn.Module, architecture: Architecture) -> None:
    """Resize ``model`` in place to ``architecture``.

    Parameters are resized in place (they stay the same objects, so an
    optimizer holding them stays valid) and buffers replaced, all with the
    recorded shapes, then re-initialised by the module's own
    ``reset_parameters`` where it has one; load the pruned weights
    afterwards.

    Args:
        model (nn.Module): A freshly built dense model of the same config.
        architecture (dict): As returned by :func:`extract_architecture`,
            or encoded by :func:`encode_architecture`.

    Raises:
        PruneError: When a recorded module or tensor does not exist in
            ``model`` (the architecture belongs to another model).
    """
    modules = dict(model.named_modules())
    for name, spec in decode_architecture(architecture).items():
        if name not in modules:
            raise PruneError(
                f'the pruned architecture names module "{name}", which this '
                'model does not have: the pruned structure belongs to another '
                'model config; use the pruned_config.py written next to the '
                'pruned checkpoint')
        module = modules[name]
        for key, value in spec.get('attrs', {}).items():
            old = getattr(module, key, None)
            setattr(module, key, tuple(value) if isinstance(old, tuple)
                    else value)
        for key, shape in spec.get('shapes', {}).items():
            old = getattr(module, key, None)
            if not isinstance(old, torch.Tensor):
                raise PruneError(
                    f'module "{name}" has no tensor "{key}": the pruned '
                    'structure belongs to another model config')
            new = torch.zeros(shape, dtype=old.dtype, device=old.device)
            if isinstance(old, nn.Parameter):
                # The same Parameter object, resized: an optimizer built on
                # the model keeps holding the model's parameters.
                old.data = new
            else:
                module.register_buffer(
                    key, new, persistent=key not in
                    module._non_persistent_buffers_set)
        if spec.get('shapes') and hasattr(module, 'reset_parameters'):
            module.reset_parameters()
