"""The interface every pruning criterion implements."""
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn

from ..structure.graph import ChannelGroup, SegmentorGraph
from ..utils.errors import PruneError


class BaseCriterion:
    """Scores the channels of every group; a higher score means keep.

    Subclasses implement :meth:`score_group` and, when they learn from data,
    set ``requires_data = True`` and implement :meth:`prepare`, which sees the
    calibration batches before any group is scored.
    """

    #: Whether :meth:`prepare` needs calibration batches.
    requires_data = False
    #: :class:`~mmseg_prune.budget.FlopsBudget` arguments this criterion's
    #: method prescribes; the config's ``pruning.budget`` overrides them.
    budget_defaults: dict = {}
    #: Whether pruning folds removed channels into the next biases by
    #: default (``pruning.bias_compensation`` overrides it).
    bias_compensation = False

    def __call__(self, graph: SegmentorGraph,
                 batches: Optional[Iterable[dict]] = None
                 ) -> Dict[str, torch.Tensor]:
        """Score every group of ``graph``.

        Args:
            graph (SegmentorGraph): The groups to score.
            batches (Iterable[dict], optional): Data batches as the config's
                train dataloader yields them; required when
                ``requires_data``.

        Returns:
            dict[str, Tensor]: Group name -> one score per channel.
        """
        self.prepare(graph, batches)
        return self.score(graph)

    def score(self, graph: SegmentorGraph) -> Dict[str, torch.Tensor]:
        """Score every group with what :meth:`prepare` (or a training hook)
        has collected."""
        scores = {}
        for group in graph.groups:
            score = self.score_group(graph, group)
            assert score.shape == (group.size, ), (
                f'{type(self).__name__} gave {tuple(score.shape)} scores for '
                f'{group.size} channels of {group.name}')
            if not torch.isfinite(score).all():
                raise PruneError(
                    f'{type(self).__name__} gave non-finite scores for '
                    f'{group.name}; check the checkpoint and the data')
            scores[group.name] = score.detach().float().cpu()
        return scores

    def prepare(self, graph: SegmentorGraph,
                batches: Optional[Iterable[dict]]) -> None:
        """Look at data before scoring. Does nothing by default."""

    def score_group(self, graph: SegmentorGraph,
                    group: ChannelGroup) -> torch.Tensor:
        """Scores of one group's channels, shape ``(group.size,)``."""
        raise NotImplementedError


def reduce_members(graph: SegmentorGraph, group: ChannelGroup,
                   module_types: Tuple[type, ...],
                   channel_score: Callable[[nn.Module], torch.Tensor]
                   ) -> torch.Tensor:
    """Average a per-output-channel score over a group's members.

    Args:
        graph (SegmentorGraph): The graph ``group`` belongs to.
        group (ChannelGroup): The group.
        module_types (tuple[type]): Members scored; others are skipped.
        channel_score (callable): Module -> one score per output channel.

    Returns:
        Tensor: Mean score per group channel (zero where no member scored).
    """
    total = torch.zeros(group.size, dtype=torch.float64)
    count = torch.zeros(group.size, dtype=torch.float64)
    for member in group.members:
        module = graph.modules[member.name]
        if member.dim != 'out' or not isinstance(module, module_types):
            continue
        values = channel_score(module).detach().double().cpu()
        root = torch.as_tensor(member.root_idxs, dtype=torch.long)
        total.index_add_(0, root, values[member.idxs])
        count.index_add_(0, root, torch.ones(len(root), dtype=torch.float64))
    return total / count.clamp(min=1)
