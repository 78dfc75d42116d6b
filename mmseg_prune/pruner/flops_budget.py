"""Choose the channels to keep so that pruning removes an exact share of the
FLOPs, or of the latency measured on this device.

The search ranks all channels by their criterion scores, normalised within
each group, and looks for the global threshold (a cut in that ranking; ties
are spread evenly over groups), in ``split`` mode the quantile at which both
the backbone's and the head's rankings are cut, or in ``uniform`` mode the
per-group ratio,
whose plan removes the requested fraction of the dense cost. Each
candidate plan is costed by an estimator (:mod:`.estimators`): FLOPs
analytically, latency from a per-layer latency table. The chosen plan is
then applied to a copy of the model and counted with the real counter (or
timed against the dense model); the target is corrected through the counts
until the counted reduction is within tolerance (see
:meth:`FlopsBudget._secant`).

A latency budget divides a channel's score by its group's latency per FLOP
(:meth:`.estimators.LatencyEstimator.rank_weights`): where latency follows
FLOPs it plans as the FLOPs budget does, and it cuts deeper where FLOPs are
slow to run.
"""
import math
import warnings
from typing import (Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import torch

from ..structure.graph import SegmentorGraph
from ..utils.errors import PruneError
from .estimators import CostEstimator, KeepPlan

#: Coarse channels the global search passes over at most, per search.
MAX_PASSED = 16


def normalize_scores(scores: torch.Tensor, normalizer: str) -> torch.Tensor:
    """Make scores of different groups comparable.

    Args:
        scores (Tensor): Scores of one group's channels.
        normalizer (str | None): ``'mean'`` divides by the group's mean,
            ``'max'`` by its maximum, ``'rank'`` replaces scores by their
            rank in [0, 1], ``None`` keeps them as they are.
    """
    scores = scores.detach().double().cpu()
    if normalizer is None:
        return scores
    if normalizer == 'rank':
        ranks = torch.empty_like(scores)
        ranks[scores.argsort()] = torch.arange(
            len(scores), dtype=scores.dtype)
        return ranks / max(len(scores) - 1, 1)
    denom = {'mean': scores.mean, 'max': scores.max}[normalizer]().abs()
    return scores / (denom + 1e-12)


class _Ranking(NamedTuple):
    """What one :meth:`FlopsBudget.select` call plans from.

    Attributes:
        scores (dict[str, Tensor]): Group name -> normalised scores.
        names (list[str]): Group names; indices below refer to them.
        parts (list[Tensor]): Per part (all groups, or backbone and the
            rest), the group index of every channel, least important first.
        steps (dict[str, int]): Group name -> multiple of channels kept.
        segments (dict[str, list[Tensor]]): Group name -> channels of each
            layer that holds only part of the group (a concatenation input).
    """
    scores: Dict[str, torch.Tensor]
    names: List[str]
    parts: List[torch.Tensor]
    steps: Dict[str, int]
    segments: Dict[str, List[torch.Tensor]]


class FlopsBudget:
    """Search the keep plan that removes ``reduction`` of the FLOPs, or of
    the measured latency.

    Args:
        reduction (float): Fraction of the dense cost to remove, in (0, 1).
        mode (str): ``'global'``: one threshold over normalised scores of all
            groups; ``'split'``: backbone groups and the others are each cut
            at the same quantile of their own scores (SIRFP's official
            budget); ``'uniform'``: every group loses the same share of its
            channels. Default: ``'global'``.
        normalizer (str | None): See :func:`normalize_scores`.
            Default: ``'mean'``.
        min_keep (float | int): Fewest channels any group keeps: a fraction
            of the group (float) or a count (int); at least 1.
            Default: 0.05.
        round_to (int | None): Keep a multiple of this many channels in
            every layer (capped at the group size; a head group keeps whole
            heads, as many as make a multiple). Groups with GroupNorm
            layers also keep a multiple of its number of groups. Where
            groups this coarse cannot meet the target within ``tolerance``,
            it is halved (with a warning) until they can. 16 suits oneDNN's
            fp32 kernels on AVX-512 CPUs (docs/alignment.md). Default: None.
        tolerance (float | None): Allowed gap between counted and
            requested reduction; for latency, between the measured and the
            target latency, as a share of the target. Default: 0.005 (half
            a percentage point) for FLOPs; 0.05 for latency.
        max_rounds (int): Counted (or timed) plans at most. Default: 6.
        cost (str): ``'flops'`` (MACs, as the papers and peers count) or
            ``'latency'``: the latency measured on this device, costed from
            a per-layer latency table
            (:class:`~mmseg_prune.analysis.LatencyTable`), with scores
            divided by their group's latency per FLOP. Default:
            ``'flops'``.

    Attributes:
        used_round_to (int | None): The channel multiple of the last plan
            :meth:`select` returned (``round_to`` after any halving; 1
            without rounding).
    """

    def __init__(self, reduction: float, mode: str = 'global',
                 normalizer: Union[str, None] = 'mean',
                 min_keep: Union[float, int] = 0.05,
                 round_to: Union[int, None] = None,
                 tolerance: Optional[float] = None, max_rounds: int = 6,
                 cost: str = 'flops'):
        if cost not in ('flops', 'latency'):
            raise PruneError(f'budget cost must be "flops" or "latency", '
                             f'got "{cost}"')
        self.cost = cost
        self.what = 'FLOPs' if cost == 'flops' else 'latency'
        if not 0 < reduction < 1:
            raise PruneError(
                f'the {self.what} reduction must be in (0, 1), got '
                f'{reduction}; pass e.g. --{cost}-reduction 0.5 to remove '
                'half')
        if mode not in ('global', 'split', 'uniform'):
            raise PruneError(f'budget mode must be "global", "split" or '
                             f'"uniform", got "{mode}"')
        if normalizer not in (None, 'mean', 'max', 'rank'):
            raise PruneError(f'normalizer must be mean, max, rank or None, '
                             f'got "{normalizer}"')
        self.reduction = reduction
        self.mode = mode
        self.normalizer = normalizer
        self.min_keep = min_keep
        self.round_to = round_to
        if tolerance is None:
            tolerance = 0.005 if cost == 'flops' else 0.05
        # In reduction units: a share of the target latency is a share of
        # what remains.
        self.tolerance = tolerance if cost == 'flops' else \
            tolerance * (1 - reduction)
        self.max_rounds = max_rounds
        self.used_round_to = None

    def _min_keep(self, size: int) -> int:
        if isinstance(self.min_keep, float):
            return max(1, math.ceil(self.min_keep * size))
        return max(1, min(int(self.min_keep), size))

    def _plan(self, ranking: '_Ranking', counts: Dict[str, int]) -> KeepPlan:
        plan = {}
        for name, count in counts.items():
            group_scores = ranking.scores[name]
            size = len(group_scores)
            count = max(count, self._min_keep(size))
            step = ranking.steps[name]
            count = math.ceil(count / step) * step
            kept = torch.zeros(size, dtype=torch.bool)
            kept[group_scores.topk(min(count, size)).indices] = True
            # min_keep holds for every layer of the group, not only the
            # group: a concatenation's inputs are layers of their own.
            for segment in ranking.segments.get(name, ()):
                need = self._min_keep(len(segment)) - int(kept[segment].sum())
                if need > 0:
                    missing = segment[~kept[segment]]
                    best = group_scores[missing].topk(need).indices
                    kept[missing[best]] = True
            extra = min(-int(kept.sum()) % step, size - int(kept.sum()))
            if extra:
                missing = (~kept).nonzero().flatten()
                kept[missing[group_scores[missing].topk(extra).indices]] = True
            plan[name] = kept.nonzero().flatten()
        return plan

    def _rank(self, graph: SegmentorGraph, scores: Dict[str, torch.Tensor],
              round_to: int,
              weights: Optional[Dict[str, float]] = None) -> '_Ranking':
        """Normalise the scores and order the channels of each part, least
        important first.

        One part holds every group, except in ``split`` mode: backbone
        groups and the others. Ties (all scores equal, say) are broken by
        the channel's relative position in its group, so that they spread
        evenly over groups. With ``weights`` (group -> how dear its
        channels are) the order is by score over weight, relative to the
        mean weight.
        """
        scores = {
            g.name: normalize_scores(scores[g.name], self.normalizer)
            for g in graph.groups
        }
        order_by = scores
        if weights:
            positive = [w for w in weights.values() if w > 0]
            mean = sum(positive) / max(len(positive), 1) or 1.0
            # A group that saves (next to) nothing is pruned last.
            order_by = {n: s / (max(weights[n], 0.01 * mean) / mean)
                        for n, s in scores.items()}
        names = list(scores)
        parts = [list(range(len(names)))]
        if self.mode == 'split':
            backbone = [i for i, n in enumerate(names)
                        if n.startswith('backbone.')]
            parts = [backbone, [i for i in range(len(names))
                                if i not in set(backbone)]]
        ranked = []
        for part in filter(None, parts):
            values = torch.cat([order_by[names[i]] for i in part])
            group_of = torch.cat([
                torch.full((len(scores[names[i]]), ), i) for i in part
            ])
            position = torch.cat([
                torch.arange(len(scores[names[i]]), dtype=torch.float64) /
                len(scores[names[i]]) for i in part
            ])
            by_position = position.argsort(stable=True)
            order = by_position[values[by_position].argsort(stable=True)]
            ranked.append(group_of[order])
        # round_to counts the layers' channels: a head of 64 already is a
        # multiple of 16.
        steps = {g.name: math.lcm(round_to, g.multiple * g.width) // g.width
                 for g in graph.groups}
        segments = {
            g.name: [
                torch.as_tensor(r, dtype=torch.long) for r in sorted(
                    {tuple(sorted(set(m.root_idxs)))
                     for m in g.members if m.dim == 'out'})
                if len(r) < g.size
            ]
            for g in graph.groups
        }
        return _Ranking(scores, names, ranked, steps, segments)

    def _plan_at(self, ranking: '_Ranking', level: float,
                 passed: Sequence[int] = ()) -> KeepPlan:
        """Plan at a cut of the global ranking (global; the channels at
        the ``passed`` positions stay), at the same quantile of each part's
        ranking (split) or at a pruned share per group (uniform)."""
        scores = ranking.scores
        if self.mode == 'uniform':
            counts = {n: len(s) - int(math.floor(level * len(s)))
                      for n, s in scores.items()}
            return self._plan(ranking, counts)
        names = ranking.names
        removed = torch.zeros(len(names), dtype=torch.long)
        for ranked in ranking.parts:
            cut = int(level) if self.mode == 'global' else \
                int(math.floor(level * len(ranked)))
            removed += torch.bincount(ranked[:cut], minlength=len(names))
            for position in passed:
                if position < cut:
                    removed[ranked[position]] -= 1
        counts = {n: len(scores[n]) - int(removed[i])
                  for i, n in enumerate(names)}
        return self._plan(ranking, counts)

    def _search(self, ranking: '_Ranking', estimator: CostEstimator,
                target: float) -> Tuple[KeepPlan, float]:
        """Plan whose estimated reduction is closest to ``target``.

        In ``global`` mode, where no cut comes within the tolerance because
        one channel's removal alone jumps over the target (a whole attention
        head, say), that channel is passed over and the cut goes on through
        the channels after it.
        """
        dense = estimator.dense
        passed = []

        def reduction(level):
            plan = self._plan_at(ranking, level, passed)
            return 1 - estimator.estimate(plan) / dense

        if self.mode == 'global':
            levels = list(range(len(ranking.parts[0]) + 1))
        else:
            steps = 2000
            levels = [i / steps for i in range(steps)]
        while True:
            lo, hi = 0, len(levels) - 1
            if reduction(levels[hi]) < target:
                lo = hi
            while lo < hi:  # first level whose reduction reaches the target
                mid = (lo + hi) // 2
                if reduction(levels[mid]) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            below, above = reduction(levels[max(lo - 1, 0)]), \
                reduction(levels[lo])
            if self.mode != 'global' or lo == 0 or \
                    len(passed) >= MAX_PASSED or \
                    above - below <= self.tolerance or \
                    min(target - below, above - target) <= self.tolerance:
                break
            passed.append(lo - 1)
        best = min((max(lo - 1, 0), below), (lo, above),
                   key=lambda c: abs(c[1] - target))
        return self._plan_at(ranking, levels[best[0]], passed), best[1]

    def _reachable(self, floor: float) -> bool:
        """Whether the target lies within ``floor``, the share of the cost
        left with every group at ``min_keep``."""
        return 1 - floor >= self.reduction - self.tolerance

    def _check_reach(self, floor: float, how: str) -> None:
        """Refuse a target below ``floor`` (see :meth:`_reachable`)."""
        if not self._reachable(floor):
            raise PruneError(
                f'a {self.what} reduction of {self.reduction:.1%} is out of '
                f'reach: with every group at min_keep={self.min_keep} the '
                f'model still has {floor:.1%} of its {self.what} ({how}; '
                'layers kept whole, such as attention and classifiers, are '
                f'not pruned); lower --{self.cost}-reduction or min_keep')

    def select(self, graph: SegmentorGraph, scores: Dict[str, torch.Tensor],
               estimator: CostEstimator,
               measure: Callable[[KeepPlan], float]) -> KeepPlan:
        """Find the plan.

        Args:
            graph (SegmentorGraph): Groups of the dense model.
            scores (dict[str, Tensor]): Group name -> channel scores.
            estimator (CostEstimator): Estimates a plan's cost (FLOPs or
                latency, as ``cost`` says).
            measure (callable): Keep plan -> the reduction counted (or
                timed) on a model pruned by it.

        Returns:
            dict[str, Tensor]: The keep plan, one of those measured.
        """
        missing = [g.name for g in graph.groups if g.name not in scores]
        if missing:
            raise PruneError(f'the criterion gave no scores for groups '
                             f'{missing[:3]}...')
        weights = estimator.rank_weights()
        round_to = self.round_to or 1
        while True:
            ranking = self._rank(graph, scores, round_to, weights)
            floor_plan = self._plan(ranking, dict.fromkeys(ranking.scores, 0))
            floor, how = estimator.estimate(floor_plan) / estimator.dense, \
                'estimated'
            why = 'rounded up, its smallest plan keeps too much'
            if self._reachable(floor):
                found, closest = self._secant(ranking, estimator, measure)
                if found is not None:
                    self.used_round_to = round_to
                    return found
                floor, how = 1 - measure(floor_plan), 'measured'
                if self._reachable(floor):
                    why = f'the closest plan removes {closest:.1%}'
            if round_to == 1:
                self._check_reach(floor, how)
                cause = 'groups are too coarse at this setting' \
                    if self.cost == 'flops' else \
                    'groups are too coarse, or the timings too noisy'
                raise PruneError(
                    f'could not reach a {self.what} reduction of '
                    f'{self.reduction:.1%} within ±{self.tolerance:.1%}: '
                    f'{why}; {cause}, so try another --{self.cost}-reduction'
                    + ('' if self.cost == 'flops' else
                       ' or time on a quiet machine'))
            warnings.warn(
                f'round_to={round_to}: groups this coarse cannot remove '
                f'{self.reduction:.1%} of the {self.what} within '
                f'±{self.tolerance:.1%} ({why}); trying '
                f'round_to={round_to // 2}')
            round_to //= 2

    def _secant(self, ranking: '_Ranking', estimator: CostEstimator,
                measure: Callable[[KeepPlan], float]
                ) -> Tuple[Optional[KeepPlan], float]:
        """Correct the estimate's target through measured plans; the plan
        within tolerance, or None, and the closest reduction measured.

        FLOPs counts are exact, so each correction is a secant step through
        the last two counts (the first goes through the origin: no pruning,
        no reduction). Timings are noisy, so a latency target is corrected
        by the slope of measured against estimated reduction, fitted by
        least squares through the origin over all plans timed so far, and
        the search aims at half the tolerance
        (a later timing of the plan, noise included, then stays within it);
        where it misses that, the closest plan within tolerance is kept.
        """
        target = self.reduction
        aim = self.tolerance / 2 if self.cost == 'latency' else \
            self.tolerance
        closest, best, history, pairs = None, None, [], []
        for _ in range(self.max_rounds):
            plan, estimated = self._search(ranking, estimator, target)
            achieved = measure(plan)
            if closest is None or abs(achieved - self.reduction) < abs(
                    closest - self.reduction):
                closest, best = achieved, plan
            if abs(achieved - self.reduction) <= aim:
                return plan, achieved
            if self.cost == 'latency':
                pairs.append((estimated, achieved))
                slope = sum(e * a for e, a in pairs) / max(
                    sum(e * e for e, _ in pairs), 1e-12)
                target = self.reduction / slope if slope > 0 else \
                    target + self.reduction - achieved
            else:
                history.append((target, achieved))
                (t0, a0), (t1, a1) = history[-2:] if len(history) > 1 else \
                    ((0.0, 0.0), history[-1])
                if abs(a1 - a0) > 1e-9:  # secant: the estimate's slope is off
                    target = t1 + (self.reduction - a1) * (t1 - t0) / (
                        a1 - a0)
                else:
                    target += self.reduction - achieved
            target = min(max(target, 0.0), 1.0)
        if abs(closest - self.reduction) <= self.tolerance:
            return best, closest
        return None, closest
