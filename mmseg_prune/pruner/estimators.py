"""What a keep plan costs, estimated without pruning: FLOPs from one count
of the dense model, latency from a per-layer latency table."""
import math
import statistics
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..analysis.complexity import Complexity
from ..analysis.latency_table import LatencyTable, grid_step, layer_calls
from ..structure.graph import SegmentorGraph
from ..structure.layer_rules import heads_layer, maps_channels_one_to_one

KeepPlan = Dict[str, torch.Tensor]


class CostEstimator:
    """Channels a keep plan leaves in every layer, and what that costs.

    Args:
        graph (SegmentorGraph): Groups of the dense model.

    Attributes:
        dense (float): The dense model's cost.
    """
    dense: float

    def __init__(self, graph: SegmentorGraph):
        self.groups = graph.groups
        self.totals = graph.channel_counts()
        self.member_idxs = [[(m.name, m.dim,
                              torch.as_tensor(m.root_idxs, dtype=torch.long))
                             for m in g.members] for g in self.groups]

    def kept_channels(self, keep: KeepPlan) -> Dict[Tuple[str, str], int]:
        """(module, 'in'|'out') -> channels left by ``keep``."""
        removed = dict.fromkeys(self.totals, 0)
        for group, members in zip(self.groups, self.member_idxs):
            if group.name not in keep:
                continue
            kept = torch.zeros(group.size, dtype=torch.bool)
            kept[keep[group.name]] = True
            for name, dim, idxs in members:
                removed[(name, dim)] += int((~kept[idxs]).sum())
        return {key: max(total - removed[key], 0)
                for key, total in self.totals.items()}

    def estimate(self, keep: KeepPlan) -> float:
        """Cost of the model pruned by ``keep``."""
        raise NotImplementedError

    def rank_weights(self) -> Optional[Dict[str, float]]:
        """Group name -> how much dearer its channels are than the budget's
        ranking assumes (the ranking divides scores by it); None: rank by
        score alone."""
        return None

    def channel_costs(self) -> Dict[str, float]:
        """Group name -> cost saved per channel removed, estimated from
        the dense model by removing half of the group (in multiples of its
        grid step): a difference large against timing noise, near where
        budgets cut."""
        costs = {}
        for group in self.groups:
            step = grid_step(group.size, group.multiple)
            removed = max(group.size // 2 // step * step, group.multiple)
            if removed >= group.size:
                costs[group.name] = 0.0
                continue
            keep = {group.name: torch.arange(group.size - removed)}
            costs[group.name] = (self.dense - self.estimate(keep)) / removed
        return costs


class FlopsEstimator(CostEstimator):
    """Analytic FLOPs of a keep plan, from one count of the dense model:
    every conv, linear and norm layer keeps its dense FLOPs scaled by the
    share of its input and output channels that survive, and an attention's
    own products by the share of its heads.

    Args:
        graph (SegmentorGraph): Groups of the dense model.
        dense (Complexity): Count of the dense model.
    """

    def __init__(self, graph: SegmentorGraph, dense: Complexity):
        super().__init__(graph)
        self.module_flops = {}
        #: Module -> the (module, dim) channels its FLOPs scale with.
        self.counted = {}
        for name, _ in self.totals:
            module = graph.modules[name]
            self.module_flops[name] = dense.by_module.get(name, 0)
            single = maps_channels_one_to_one(module)
            dims = {d for n, d in self.totals if n == name}
            self.counted[name] = [
                (name, d)
                for d in ({'out'} if single and 'out' in dims else dims)]
        for name, module in graph.modules.items():
            child = heads_layer(module)
            if child is not None and (f'{name}.{child}', 'out') in self.totals:
                # Its own FLOPs: the attention products, per head.
                self.module_flops[name] = dense.by_module.get(name, 0) - sum(
                    dense.by_module.get(f'{name}.{c}', 0)
                    for c, _ in module.named_children())
                self.counted[name] = [(f'{name}.{child}', 'out')]
        self.dense = dense.flops
        self.dense_leaf = sum(self.module_flops.values())

    def estimate(self, keep: KeepPlan) -> float:
        """FLOPs (MACs) of the model pruned by ``keep``."""
        kept = self.kept_channels(keep)
        leaf = 0.0
        for name, flops in self.module_flops.items():
            ratio = 1.0
            for key in self.counted[name]:
                ratio *= kept[key] / self.totals[key]
            leaf += flops * ratio
        other = self.dense - self.dense_leaf
        return leaf + other * leaf / max(self.dense_leaf, 1)


class LatencyEstimator(CostEstimator):
    """Latency of a keep plan from a per-layer latency table.

    Every conv and linear layer a group touches costs what the table gives
    for its remaining channels; the rest of the model (norms, activations,
    resizing, layers kept whole: the measured dense latency less the
    layers' sum) scales with the layers' total.

    Channels are ranked by score over their group's latency per FLOP (ms
    saved per FLOP saved by removing some of its channels, relative to the
    mean over groups): where latency follows FLOPs the plans are the FLOPs
    budget's, and where a group's FLOPs are slow (or fast) to run, it loses
    more (or fewer) channels.

    Args:
        graph (SegmentorGraph): Groups of the dense model.
        table (LatencyTable): Where layer latencies are read (and timed
            when missing).
        dense (float): Measured latency of the dense model, in ms.
        flops (FlopsEstimator): FLOPs of the same graph's plans.
    """

    def __init__(self, graph: SegmentorGraph, table: LatencyTable,
                 dense: float, flops: 'FlopsEstimator'):
        super().__init__(graph)
        self.table = table
        self.flops = flops
        names = sorted({
            name for name, _ in self.totals
            if isinstance(graph.modules[name], (nn.Conv2d, nn.Linear))
        })
        self.calls = layer_calls(graph.model, graph.input_shape, names)
        multiples = {}
        for group in self.groups:
            for member in group.members:
                key = (member.name, member.dim)
                multiples[key] = math.lcm(multiples.get(key, 1),
                                          group.multiple)
        self.steps = {
            name: tuple(multiples.get((name, dim), 1)
                        for dim in ('in', 'out')) for name in names
        }
        self.dense = dense
        self.dense_layers = self._layers(dict(self.totals))

    def _layers(self, kept: Dict[Tuple[str, str], int]) -> float:
        total = 0.0
        for name, calls in self.calls.items():
            for call in calls:
                cin = kept.get((name, 'in'), call.in_channels)
                cout = kept.get((name, 'out'), call.out_channels)
                total += self.table.latency(call, cin, cout,
                                            self.steps[name])
        return total

    def rank_weights(self) -> Dict[str, float]:
        """Group name -> ms saved per FLOP saved (a group that saves no
        FLOPs: the median of the others)."""
        per_channel_ms = self.channel_costs()
        per_channel_flops = self.flops.channel_costs()
        weights = {name: per_channel_ms[name] / flops
                   for name, flops in per_channel_flops.items() if flops > 0}
        median = statistics.median(weights.values()) if weights else 1.0
        return {name: weights.get(name, median) for name in per_channel_ms}

    def estimate(self, keep: KeepPlan) -> float:
        """Milliseconds of the model pruned by ``keep``."""
        layers = self._layers(self.kept_channels(keep))
        rest = max(self.dense - self.dense_layers, 0.0)
        return layers + rest * layers / max(self.dense_layers, 1e-9)
