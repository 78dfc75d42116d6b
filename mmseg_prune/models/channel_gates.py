"""Learnable per-channel importance scores that gate a segmentor's layers.

One score per channel of every prunable channel group (coupled channels
share one), initialised to 1, multiplies the output of the group's norm
layers (BN or GN; the layer's convs, else its linear layers, when it has
none) through forward hooks, so the wrapped segmentor keeps its modules,
names and state dict. :meth:`ChannelGates.fold_into` moves the scores into
those layers' weights, after which the plain segmentor computes what the
gated one did.
"""
import fnmatch
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from ..structure.graph import SegmentorGraph
from ..structure.layer_rules import is_gatable, output_layers

#: (group key, module channel indices, group channel indices)
_Entry = Tuple[str, torch.Tensor, torch.Tensor]


def _key(group_name: str) -> str:
    return group_name.replace('.', '-')  # ParameterDict keys have no dots


class ChannelGates(nn.Module):
    """Scores of a segmentor's channel groups, applied as output gates.

    Args:
        graph (SegmentorGraph): Channel groups of a model with the same
            architecture and module names as ``segmentor`` (a copy is fine).
        segmentor (nn.Module): The model whose layers are gated.
        ignore (Sequence[str]): ``fnmatch`` patterns of modules whose
            output channels are never pruned, as
            :class:`~mmseg_prune.structure.SegmentorGraph` reads them: a
            group that such a module produces gets no scores (a group that
            only feeds one, such as the last head layer's input, does).

    Attributes:
        scores (nn.ParameterDict): Group key (the group name with ``-`` for
            ``.``) -> one score per channel.
        group_names (dict[str, str]): Group key -> group name.
    """

    def __init__(self, graph: SegmentorGraph, segmentor: nn.Module,
                 ignore: Sequence[str] = ()):
        super().__init__()
        self.scores = nn.ParameterDict()
        self.group_names: Dict[str, str] = {}
        self.layers: Dict[str, List[_Entry]] = {}
        modules = dict(segmentor.named_modules())
        for group in graph.groups:
            members = output_layers(graph, group)
            if not members or not all(
                    is_gatable(modules[m.name]) for m in members):
                continue
            if any(fnmatch.fnmatch(m.name, p) for m in group.members
                   if m.dim == 'out' for p in ignore):
                continue
            key = _key(group.name)
            self.scores[key] = nn.Parameter(torch.ones(group.size))
            self.group_names[key] = group.name
            for member in members:
                self.layers.setdefault(member.name, []).append(
                    (key, torch.as_tensor(member.idxs),
                     torch.as_tensor(member.root_idxs)))
        self.enabled = True
        self._handles: Dict[str, object] = {}
        self._attached: Dict[str, nn.Module] = {}
        self.attach(segmentor)

    def attach(self, segmentor: nn.Module) -> None:
        """Hook the gated layers of ``segmentor`` where not done yet.

        Called before every forward of the wrapper, because layers can be
        replaced after the gates were made: MMEngine's runner reverts SyncBN
        to new BN modules outside distributed training.
        """
        modules = dict(segmentor.named_modules())
        for name in self.layers:
            module = modules[name]
            if self._attached.get(name) is module:
                continue
            if name in self._handles:
                self._handles[name].remove()
            self._handles[name] = module.register_forward_hook(
                self._gate(module, name))
            self._attached[name] = module

    def scale(self, layer: str, channels: int) -> torch.Tensor:
        """The factor of each output channel of ``layer``."""
        entries = self.layers[layer]
        first = self.scores[entries[0][0]]
        scale = first.new_ones(channels)
        for key, idxs, root in entries:
            scale = scale.index_copy(
                0, idxs.to(scale.device), self.scores[key][root.to(
                    scale.device)])
        return scale

    def _gate(self, target: nn.Module, name: str):

        def hook(module, inputs, output):
            # A deep copy of the model carries this hook too; it gates only
            # the module it was registered on.
            if module is not target or not self.enabled:
                return None
            dim = -1 if isinstance(module, nn.Linear) else 1
            scale = self.scale(name, output.shape[dim])
            shape = [1] * output.dim()
            shape[dim] = -1
            return output * scale.view(shape).to(output.dtype)

        return hook

    def importance(self) -> Dict[str, torch.Tensor]:
        """Group name -> |score| of each channel."""
        return {self.group_names[k]: v.detach().abs().float().cpu()
                for k, v in self.scores.items()}

    def sparsity(self) -> torch.Tensor:
        """The L1 norm of all scores."""
        return sum(v.abs().sum() for v in self.scores.values())

    @torch.no_grad()
    def fold_into(self, model: nn.Module) -> None:
        """Multiply the gated layers' weights and biases of ``model`` (this
        segmentor or a copy of it) by their scores."""
        modules = dict(model.named_modules())
        for name in self.layers:
            module = modules[name]
            scale = self.scale(name, module.weight.shape[0]).to(
                module.weight.device, module.weight.dtype)
            module.weight.mul_(scale.view(-1, *[1] *
                                          (module.weight.dim() - 1)))
            if module.bias is not None:
                module.bias.mul_(scale)

    def remove(self) -> None:
        """Stop gating: detach the hooks."""
        for handle in self._handles.values():
            handle.remove()
        self._handles = {}
        self._attached = {}
