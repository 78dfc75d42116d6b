"""What each kind of layer does to channels: the one place that knows.

The dependency graph, the FLOPs budget, the criteria, bias compensation and
MTP's gates all ask these questions; supporting a new module type means
answering them here. Layer types that torch-pruning itself cannot resize
are added through its ``customized_pruners`` (see
:class:`~mmseg_prune.structure.SegmentorGraph`), as torch-pruning designs it.
"""
import math
from typing import TYPE_CHECKING, Dict, List, Optional

import torch
import torch.nn as nn

from .attention import SplitHeadAttention

if TYPE_CHECKING:  # pragma: no cover
    from .graph import ChannelGroup, GroupMember, SegmentorGraph

#: Normalisation layers: each output channel is the same input channel.
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
#: Modules whose output channels are never pruned: the class classifiers.
CLASSIFIER_PATTERNS = ('*conv_seg', '*.fc_seg', '*conv_seg_*')
#: Module type -> torch-pruning pruner (a ``BasePruningFunc``) for layer
#: types torch-pruning lacks; see :func:`register_layer_pruner`.
LAYER_PRUNERS: Dict[type, object] = {}


def register_layer_pruner(module_type: type, pruner) -> None:
    """Teach the dependency graph a layer type with its own parameters.

    Args:
        module_type (type): The ``nn.Module`` subclass.
        pruner: A ``torch_pruning.pruner.BasePruningFunc`` that resizes its
            input and output channels (torch-pruning's
            ``customized_pruners``).
    """
    LAYER_PRUNERS[module_type] = pruner


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer (batch, instance, group or layer norm)."""
    return isinstance(module, NORM_TYPES)


def is_batch_norm(module: nn.Module) -> bool:
    """A batch norm (running statistics; SyncBN once reverted)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def normalises_feature_maps(module: nn.Module) -> bool:
    """A norm whose statistics run over a channel's (or a channel group's)
    feature map; a layer norm mixes all channels of a token instead."""
    return is_norm(module) and not isinstance(module, nn.LayerNorm)


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd)


def is_weight_layer(module: nn.Module) -> bool:
    """A conv or linear layer: weights over input and output channels."""
    return is_conv(module) or isinstance(module, nn.Linear)


def filters(module: nn.Module) -> torch.Tensor:
    """A conv or linear layer's weight as one row per output channel."""
    weight = module.weight
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        weight = weight.transpose(0, 1)
    return weight.flatten(1)


def is_depthwise(module: nn.Module) -> bool:
    """A conv with one filter per channel: its input and output channels
    are the same channels."""
    return is_conv(module) and module.groups > 1 and \
        module.groups == module.in_channels == module.out_channels


def maps_channels_one_to_one(module: nn.Module) -> bool:
    """Output channel i depends on input channel i only (norms, depthwise
    convs): its FLOPs shrink once for a channel removed on either side."""
    return is_norm(module) or is_depthwise(module)


def keeps_whole(module: nn.Module) -> bool:
    """Layers whose channels are not pruned one by one.

    ``nn.MultiheadAttention``: pruning arbitrary embedding channels would
    re-mix heads (a :class:`SplitHeadAttention` loses whole heads instead).
    Grouped convs other than plain depthwise ones (including depthwise convs
    with a channel multiplier): each group must lose the same channels, which
    torch-pruning does not guarantee.
    """
    if isinstance(module, nn.MultiheadAttention):
        return True
    return is_conv(module) and module.groups > 1 and not is_depthwise(module)


def heads_layer(module: nn.Module) -> Optional[str]:
    """For a module whose own FLOPs (an attention's products of queries
    with keys and of weights with values) scale with its heads: its child
    whose output channels count them; else None."""
    return 'q_proj' if isinstance(module, SplitHeadAttention) else None


def channel_multiple(module: nn.Module) -> int:
    """Channels are kept in multiples of this (a GroupNorm's groups)."""
    return module.num_groups if isinstance(module, nn.GroupNorm) else 1


def group_multiple(modules) -> int:
    """The least common multiple of :func:`channel_multiple` over
    ``modules``."""
    multiple = 1
    for module in modules:
        multiple = math.lcm(multiple, channel_multiple(module))
    return multiple


def is_gatable(module: nn.Module) -> bool:
    """A layer whose output scale folds into its own weight and bias (MTP's
    gates sit on these)."""
    if normalises_feature_maps(module):
        return module.affine
    if is_conv(module):
        return not module.transposed
    return isinstance(module, nn.Linear)


def shifts_bias_on_constant_input(module: nn.Module) -> bool:
    """A layer whose answer to a constant input map is a bias shift that
    its kernel sums give: an ungrouped 2-D conv or a linear layer (bias
    compensation folds removed channels into these)."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear)


def output_layers(graph: 'SegmentorGraph',
                  group: 'ChannelGroup') -> List['GroupMember']:
    """The members of ``group`` whose outputs carry its channels as a layer
    computes them: its feature-map norms (BN or GN; SIRFP hooks BN outputs,
    MTP gates them), else its convs, else its linear layers."""
    outs = [m for m in group.members if m.dim == 'out']
    for rule in (normalises_feature_maps, is_conv,
                 lambda module: isinstance(module, nn.Linear)):
        found = [m for m in outs if rule(graph.modules[m.name])]
        if found:
            return found
    return []
