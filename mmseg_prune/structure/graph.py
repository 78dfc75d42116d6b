"""Channel dependencies of an mmseg segmentor in its training topology."""
import copy
import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn
import torch_pruning as tp
from mmengine.model import revert_sync_batchnorm
from torch_pruning.utils import flatten_as_list

from mmengine.logging import print_log
from torch_pruning._helpers import GroupItem

from ..utils.errors import PruneError
from .attention import SplitHeadAttention
from .layer_rules import (CLASSIFIER_PATTERNS, LAYER_PRUNERS,
                          group_multiple, is_depthwise, keeps_whole)
from .torch_pruning_patches import install_patches


def auxiliary_heads(segmentor: nn.Module) -> List[nn.Module]:
    """The segmentor's auxiliary heads as a list (empty when it has none)."""
    aux = getattr(segmentor, 'auxiliary_head', None)
    if aux is None:
        return []
    return list(aux) if isinstance(aux, nn.ModuleList) else [aux]


def is_point_head(head: nn.Module) -> bool:
    """A PointRend head: it classifies sampled points, not feature maps."""
    return hasattr(head, '_get_fine_grained_point_feats')


def point_logits(head: nn.Module, feats, prev_output: torch.Tensor,
                 test_cfg) -> torch.Tensor:
    """A point head's logits (N, classes, P) on the points of its first
    inference subdivision step (the most uncertain ones of the previous
    head's upsampled output), as ``PointHead.predict`` samples them."""
    from mmseg.models.decode_heads.point_head import calculate_uncertainty
    from mmseg.models.utils import resize
    x = head._transform_inputs(feats)
    upsampled = resize(prev_output, scale_factor=test_cfg.scale_factor,
                       mode='bilinear', align_corners=head.align_corners)
    _, points = head.get_points_test(upsampled, calculate_uncertainty,
                                     cfg=test_cfg)
    return head.forward(head._get_fine_grained_point_feats(x, points),
                        head._get_coarse_point_feats(prev_output, points))


def decode_outputs(segmentor: nn.Module, feats) -> list:
    """The raw output of every decode head (one, or a cascade's in order)
    on the backbone/neck features ``feats``; a point head gives its point
    logits (:func:`point_logits`)."""
    heads = segmentor.decode_head
    if not isinstance(heads, nn.ModuleList):
        return [heads.forward(feats)]
    outputs = [heads[0].forward(feats)]  # CascadeEncoderDecoder
    for head in heads[1:]:
        outputs.append(
            point_logits(head, feats, outputs[-1], segmentor.test_cfg)
            if is_point_head(head) else head.forward(feats, outputs[-1]))
    return outputs


def inference_forward(segmentor: nn.Module,
                      inputs: torch.Tensor) -> torch.Tensor:
    """The segmentor's tensor-mode inference: mmseg's ``_forward``, except
    for a PointRend cascade, which mmseg's tensor mode does not support: its
    inference path then (mmseg's ``encode_decode``: the point head refines
    the coarse output in its subdivision steps, to the input's size).

    Args:
        segmentor (nn.Module): An ``EncoderDecoder``-like segmentor.
        inputs (Tensor): A normalized batch (N, 3, H, W).

    Returns:
        Tensor: The logits.
    """
    heads = getattr(segmentor, 'decode_head', None)
    if not (isinstance(heads, nn.ModuleList)
            and any(is_point_head(head) for head in heads)):
        return segmentor._forward(inputs)
    shape = tuple(inputs.shape[2:])
    metas = [dict(img_shape=shape, pad_shape=shape, ori_shape=shape)
             ] * inputs.shape[0]
    return segmentor.encode_decode(inputs, metas)


def forward_all_heads(segmentor: nn.Module, inputs: torch.Tensor) -> list:
    """Run backbone, neck, decode head(s) and every auxiliary head.

    mmseg's ``mode='tensor'`` forward skips auxiliary heads, so a graph
    traced through it would prune their inputs without fixing them up. This
    forward covers the training topology instead; the data preprocessor is
    bypassed (``inputs`` is already a normalized batch).

    Args:
        segmentor (nn.Module): An ``EncoderDecoder``-like segmentor.
        inputs (Tensor): Images of shape (N, 3, H, W).

    Returns:
        list: The raw outputs of every head.
    """
    feats = segmentor.extract_feat(inputs)
    outputs = decode_outputs(segmentor, feats)
    for head in auxiliary_heads(segmentor):
        outputs.append(head.forward(feats))
    return outputs


def check_segmentor(model: nn.Module) -> None:
    """Raise :class:`PruneError` unless ``model`` is an encoder-decoder."""
    from mmseg.models.segmentors import BaseSegmentor
    if not (isinstance(model, BaseSegmentor) and hasattr(model, 'decode_head')
            and hasattr(model, 'extract_feat')):
        raise PruneError(
            f'the config\'s model is a {type(model).__name__}, not an mmseg '
            'encoder-decoder segmentor; use a config whose model type is '
            'EncoderDecoder or CascadeEncoderDecoder')


class GroupMember(NamedTuple):
    """One module a group resizes.

    Attributes:
        name (str): Module name.
        dim (str): ``'out'`` or ``'in'``: which of its channels.
        idxs (list[int]): The module's channel indices in the group.
        root_idxs (list[int]): The group channel each of them belongs to.
    """
    name: str
    dim: str
    idxs: List[int]
    root_idxs: List[int]


def _keeps_channels(grad_fn) -> bool:
    """A reshape under which channel i stays channel i.

    Two kinds: a channel vector that only gains or loses singleton dims,
    such as (1, C, 1, 1) <-> (1, C) or a PReLU weight (C,) -> (1, C, 1, 1);
    and a token tensor whose leading dims merge or split around its last
    (channel) dim, such as (N, L, C) <-> (N * L, C) inside a linear layer.
    """
    try:
        before = tuple(grad_fn._saved_self_sym_sizes)
        after = tuple(grad_fn._input_metadata[0].shape)
    except (AttributeError, IndexError, RuntimeError):
        return False
    sizes = [d for d in before if d != 1]
    if len(sizes) == 1 and sizes == [d for d in after if d != 1]:
        return True
    return 2 <= len(before) <= 3 and 2 <= len(after) <= 3 and \
        before[-1] == after[-1] > 1


@dataclass
class ChannelGroup:
    """Channels that must be pruned together, and where they live.

    Attributes:
        name (str): Name of the root module (a conv or linear layer whose
            output channels the group prunes).
        size (int): Number of channels in the group (of heads, in an
            attention's head group: each maps to ``head_dim`` channels of
            its members).
        members (list[GroupMember]): Every module the group resizes.
        tp_group: The torch-pruning group with full indices, which
            torch-pruning's importance estimators accept.
        multiple (int): The group keeps a multiple of this many channels
            (the number of groups of its GroupNorm layers, 1 without).
        width (int): Channels of its layers per group channel (a head's
            ``head_dim``; 1 in channel groups).
    """
    name: str
    size: int
    members: List['GroupMember'] = field(repr=False)
    tp_group: object = field(repr=False)
    multiple: int = 1
    width: int = 1


class SegmentorGraph:
    """Coupled channel groups of a segmentor, built with torch-pruning.

    The segmentor is put on the CPU, its SyncBN layers are reverted to BN
    (so the graph can be traced without a process group) and it is traced
    through :func:`forward_all_heads`, so residual adds, concatenations
    (ASPP, PPM, HRNet fusion), depthwise and grouped convs and norm layers
    couple channels across backbone, neck and every head. Every
    :class:`~mmseg_prune.structure.attention.SplitHeadAttention` adds a
    group whose channels are its heads (:meth:`_head_groups`).

    Args:
        segmentor (nn.Module): The segmentor. It is modified in place when
            SyncBN is reverted: use :attr:`model` afterwards.
        input_shape (tuple[int, int]): (H, W) of the tracing input.
        ignore (Sequence[str]): ``fnmatch`` patterns of module names whose
            output channels are never pruned, added to the classifiers.
    """

    def __init__(self, segmentor: nn.Module, input_shape: Sequence[int],
                 ignore: Sequence[str] = ()):
        check_segmentor(segmentor)
        install_patches()
        self.model = revert_sync_batchnorm(segmentor).cpu().eval()
        self.input_shape = tuple(input_shape)
        self.module_names = {m: n for n, m in self.model.named_modules()}
        self.modules = dict(self.model.named_modules())
        unknown = [p for p in ignore
                   if not any(fnmatch.fnmatch(n, p) for n in self.modules)]
        if unknown:
            raise PruneError(
                f'ignore pattern(s) {unknown} match no module of the model; '
                'patterns are fnmatch globs over module names such as '
                '"decode_head.bottleneck*"')
        self.protected = self._find_protected(tuple(ignore))
        self.dependency_graph = self._trace()
        kept = set(self.protected)
        self.protected = sorted(kept | self._cut_at_reshapes())
        self.unprunable = []
        self.groups = self._collect_groups()
        self.groups += self._head_groups(kept)
        self.unprunable += self._drop_breaking_groups()
        if self.unprunable:
            print_log(
                f'{len(self.unprunable)} channel group(s) are kept whole '
                'because pruning them breaks the model: '
                f'{", ".join(self.unprunable)}',
                logger='current', level=30)

    def example_inputs(self) -> torch.Tensor:
        return torch.randn(1, 3, *self.input_shape)

    def _find_protected(self, ignore: Tuple[str, ...]) -> List[str]:
        """Classifiers, user patterns, and modules producing head outputs."""
        patterns = CLASSIFIER_PATTERNS + ignore
        protected = {
            name for name in self.modules
            if any(fnmatch.fnmatch(name, p) for p in patterns)
        }
        self.output_shapes = None
        produced = {}
        hooks = [
            m.register_forward_hook(
                lambda mod, inp, out: produced.__setitem__(id(out), mod))
            for m in self.modules.values() if not list(m.children())
        ]
        try:
            with torch.no_grad():
                outputs = forward_all_heads(self.model, self.example_inputs())
        except Exception as exc:  # noqa: BLE001 - reported to the user
            raise PruneError(
                f'the segmentor\'s forward fails at input shape '
                f'{self.input_shape}: {type(exc).__name__}: {exc}; try '
                'another --input-shape') from exc
        finally:
            for h in hooks:
                h.remove()
        outputs = flatten_as_list(outputs)
        self.output_shapes = [tuple(t.shape) for t in outputs]
        for out in outputs:
            if id(out) in produced:
                protected.add(self.module_names[produced[id(out)]])
        return sorted(protected)

    def _trace(self) -> tp.DependencyGraph:
        # The trace follows autograd, so frozen parameters (MTP's search)
        # take part while it runs.
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                for param in frozen:
                    param.requires_grad_(True)
                return tp.DependencyGraph().build_dependency(
                    self.model, self.example_inputs(),
                    forward_fn=forward_all_heads, verbose=False,
                    customized_pruners=dict(LAYER_PRUNERS) or None)
            except Exception as exc:  # noqa: BLE001 - reported to the user
                raise PruneError(
                    'cannot trace the channel dependencies of this model '
                    f'({type(exc).__name__}: {exc}); this model family is '
                    'not supported yet') from exc
            finally:
                for param in frozen:
                    param.requires_grad_(False)

    def _cut_at_reshapes(self) -> set:
        """Keep channels that flow through a reshape whole.

        Reshapes (attention blocks flattening H x W, token <-> map
        conversions) make torch-pruning map every channel to H x W indices,
        which explodes the groups of non-local heads (minutes, then out of
        memory) and couples channels to positions. The graph is cut at every
        reshape, and every layer whose output channels meet a reshape's
        channels is protected: found by walking from the reshape through
        channel-preserving nodes (norms, activations, adds, pooling,
        concatenations) in both directions, up to the convs and linears on
        either side (a concatenation passes them on to its output only, a
        split back to its input only). Layers reached from their output
        side produce those channels and are protected; layers reached from
        their input side only consume them and keep their input channels (no
        group reaches them across the cut).

        Returns:
            set[str]: Names of the protected producers.
        """
        dg = self.dependency_graph
        reshapes = [n for n in dg.module2node.values()
                    if n.type == tp.ops.OPTYPE.RESHAPE
                    and not _keeps_channels(n.grad_fn)]

        def is_layer(node):  # a depthwise conv passes its channels on
            return isinstance(node.module, (tp.ops.TORCH_CONV,
                                            tp.ops.TORCH_LINEAR)) and \
                not is_depthwise(node.module)

        joins = (tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT)
        producers, seen = set(), set()
        stack = [(n, 'producer') for r in reshapes for n in r.inputs]
        stack += [(n, 'consumer') for r in reshapes for n in r.outputs]
        while stack:
            node, role = stack.pop()
            layer = is_layer(node)
            key = (node, role) if layer or node.type in joins else node
            if key in seen:
                continue
            seen.add(key)
            name = self.module_names.get(node.module) if isinstance(
                node.module, nn.Module) else None
            if layer:
                if role == 'producer' and name is not None:
                    producers.add(name)
                continue
            if name is not None and is_depthwise(node.module):
                producers.add(name)
            # Channels entering a concatenation leave it, and do not meet
            # its other inputs; a split's output comes from its input only.
            if not (node.type == tp.ops.OPTYPE.CONCAT and role == 'consumer'):
                stack += [(n, 'producer') for n in node.inputs]
            if not (node.type == tp.ops.OPTYPE.SPLIT and role == 'producer'):
                stack += [(n, 'consumer') for n in node.outputs]
        cut = set(reshapes)
        for node in dg.module2node.values():
            if node in cut:
                node.dependencies = []
            else:
                node.dependencies = [
                    d for d in node.dependencies if d.target not in cut
                ]
        return producers

    def _head_groups(self, kept: set) -> List[ChannelGroup]:
        """One group per :class:`SplitHeadAttention`: its channels are its
        heads, each the ``head_dim`` query, key and value channels of the
        head and the output projection's inputs that read them.

        The reshapes into heads cut these channels off every other group;
        an attention with one head, or with a projection in ``kept`` (the
        classifiers, ``ignore``, head outputs), has none.
        """
        dg = self.dependency_graph
        groups = []
        for name, module in self.modules.items():
            if not isinstance(module, SplitHeadAttention) or \
                    module.num_heads < 2:
                continue
            parts = (('q_proj', 'out'), ('k_proj', 'out'), ('v_proj', 'out'),
                     ('out_proj', 'in'))
            layers = [getattr(module, part) for part, _ in parts]
            names = [f'{name}.{part}' for part, _ in parts]
            if kept.intersection(names) or not all(
                    layer in dg.module2node for layer in layers):
                continue
            root = dg.module2node[module.q_proj]
            trigger = dg.get_pruner_of_module(module.q_proj).prune_out_channels
            tp_group, members = tp.Group(), []
            tp_group._DG = dg
            idxs = list(range(module.num_heads * module.head_dim))
            roots = [i // module.head_dim for i in idxs]
            for (part, dim), layer, member in zip(parts, layers, names):
                pruner = dg.get_pruner_of_module(layer)
                handler = pruner.prune_out_channels if dim == 'out' else \
                    pruner.prune_in_channels
                # As torch-pruning's own groups hold them: plain indices,
                # with the root index of each beside them.
                item = GroupItem(tp.Dependency(trigger, handler, root,
                                               dg.module2node[layer]), idxs)
                item.root_idxs = roots
                tp_group.items.append(item)
                members.append(GroupMember(member, dim, idxs, roots))
            groups.append(ChannelGroup(name=names[0], size=module.num_heads,
                                       members=members, tp_group=tp_group,
                                       width=module.head_dim))
        return groups

    def _indices_fit(self, member: GroupMember) -> bool:
        dg = self.dependency_graph
        get = dg.get_out_channels if member.dim == 'out' else \
            dg.get_in_channels
        count = get(self.modules[member.name])
        return count is None or max(member.idxs, default=-1) < count

    def _collect_groups(self) -> List[ChannelGroup]:
        dg = self.dependency_graph
        protected = [self.modules[n] for n in self.protected]
        groups = []
        for tp_group in dg.get_all_groups(ignored_layers=protected):
            members = []
            for item in tp_group.items:
                module = item.dep.target.module
                name = self.module_names.get(module)
                if name is None:  # torch-pruning's placeholder op nodes
                    continue
                dim = 'out' if dg.is_out_channel_pruning_fn(
                    item.dep.handler) else 'in'
                members.append(
                    GroupMember(name, dim, list(item.idxs),
                                list(item.root_idxs)))
            if any(keeps_whole(self.modules[m.name]) for m in members):
                continue
            if not all(self._indices_fit(m) for m in members):
                # torch-pruning mapped channels through an op it misreads
                # (a sum over channels, say): the group is not sound.
                self.unprunable.append(self.module_names[
                    tp_group[0].dep.target.module])
                continue
            root = tp_group[0].dep.target.module
            multiple = group_multiple(self.modules[m.name] for m in members)
            groups.append(
                ChannelGroup(
                    name=self.module_names[root],
                    size=len(tp_group[0].idxs),
                    members=members,
                    tp_group=tp_group,
                    multiple=multiple))
        if not groups:
            raise PruneError(
                'found no prunable channel group in this model; every conv '
                'or linear layer is protected or untraceable')
        return groups

    def channel_counts(self) -> Dict[Tuple[str, str], int]:
        """Current (module name, 'out'|'in') -> number of channels."""
        dg = self.dependency_graph
        counts = {}
        for group in self.groups:
            for name, dim, _, _ in group.members:
                module = self.modules[name]
                get = dg.get_out_channels if dim == 'out' else \
                    dg.get_in_channels
                counts[(name, dim)] = get(module)
        return counts

    def prune(self, keep: Dict[str, torch.Tensor]) -> nn.Module:
        """A physically pruned copy of the model; the graph stays dense.

        Every module and parameter a group touches loses, in one call, the
        union of the dense indices that the removed channels of all groups
        map to, so channels of several groups meeting in one layer (the
        inputs of a concatenation) are removed together.

        Args:
            keep (dict[str, Tensor]): Group name -> indices of the channels to
                keep. Groups not named keep all their channels.

        Returns:
            nn.Module: The pruned copy.
        """
        removals = {}
        for group in self.groups:
            if group.name not in keep:
                continue
            removed = set(range(group.size)) - {int(i) for i in
                                                keep[group.name]}
            if len(removed) == group.size:
                raise PruneError(f'the plan removes every channel of '
                                 f'{group.name}; raise min_keep')
            for item in group.tp_group.items:
                idxs = {i for i, r in zip(item.idxs, item.root_idxs)
                        if r in removed}
                if idxs:
                    removals.setdefault((item.dep.target, item.dep.handler),
                                        set()).update(idxs)
        model = copy.deepcopy(self.model)
        modules = dict(model.named_modules())
        param_names = self.dependency_graph._param_to_name
        for (node, handler), idxs in removals.items():
            handler.__self__.pruning_dim = node.pruning_dim
            if isinstance(node.module, nn.Parameter):
                owner, _, attr = param_names[node.module].rpartition('.')
                parent = modules[owner]
                setattr(parent, attr, handler(getattr(parent, attr),
                                              sorted(idxs)))
            elif node.module in self.module_names:
                handler(modules[self.module_names[node.module]],
                        sorted(idxs))
            # Other nodes are torch-pruning's placeholders for functional
            # ops (add, concat, reshape): they hold no tensors.
        return model

    def _breaks(self, groups: List[ChannelGroup]) -> bool:
        """Whether losing a few channels of each of ``groups`` breaks the
        forward or changes an output shape."""
        keep = {g.name: torch.arange(g.multiple, g.size) for g in groups
                if g.size > g.multiple}
        try:
            model = self.prune(keep).eval()
            with torch.no_grad():
                outputs = forward_all_heads(model, self.example_inputs())
        except Exception:  # noqa: BLE001 - any failure marks the groups
            return True
        shapes = [tuple(t.shape) for t in flatten_as_list(outputs)]
        return shapes != self.output_shapes

    def _drop_breaking_groups(self) -> List[str]:
        """Keep whole the groups whose pruning breaks the model.

        Some layers use channel counts the traced graph cannot see (a
        parameter used through an einsum, a reshape to a fixed size, a
        LayerNorm over (C, 1, 1)). Each group is tried by removing a few of
        its channels in a copy of the model, all groups at once, and a
        failing set is bisected (the shortest failing prefix ends with a
        culprit) until the rest runs: one forward when every group is fine,
        about log2(#groups) more for each culprit.

        Returns:
            list[str]: Names of the groups dropped.
        """
        groups, dropped = list(self.groups), []
        while groups and self._breaks(groups):
            lo, hi = 1, len(groups)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._breaks(groups[:mid]):
                    hi = mid
                else:
                    lo = mid + 1
            dropped.append(groups.pop(lo - 1).name)
        if not groups:
            raise PruneError(
                'every channel group breaks the forward when pruned (first: '
                f'{dropped[0]}), so this model family is not supported yet')
        self.groups = groups
        return dropped
