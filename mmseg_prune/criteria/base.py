"""The interface every pruning criterion implements."""
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn

from ..structure.graph import ChannelGroup, SegmentorGraph
from ..utils.errors import PruneError


class BaseCriterion:
    """Scores the channels of every group; a higher score means keep.

    Subclasses implement :meth:`score_group` and, when they learn from data,
    set ``requires_data = True`` and implement :meth:`prepare`, which sees the
    calibration batches before any group is scored.

    A criterion that also learns inside a training run (pruning at
    scheduled iterations, :class:`~mmseg_prune.hooks.PruningHook`) sets
    ``learns_during_training = True`` and owns that life: :meth:`watch`
    starts learning from the live model, :meth:`unwatch` stops,
    :meth:`state_dict` and :meth:`load_state_dict` carry what it learned
    through checkpoints, and :meth:`finish` tells it that its step has
    pruned the model. The hook then calls :meth:`score` at the step, with
    no calibration batches.
    """

    #: Whether :meth:`prepare` needs calibration batches.
    requires_data = False
    #: Whether the criterion learns from the training run it prunes.
    learns_during_training = False
    #: :class:`~mmseg_prune.pruner.FlopsBudget` arguments this criterion's
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

    # -- the training-time life (learns_during_training) ------------------
    def watch(self, model: nn.Module, graph: SegmentorGraph) -> None:
        """Start learning from the training steps of ``model``.

        Args:
            model (nn.Module): The model the runner trains, wrappers (DDP,
                MTP's) included.
            graph (SegmentorGraph): Groups of a copy of the trained
                segmentor, with its module names.
        """
        raise PruneError(
            f'{type(self).__name__} does not learn during training; use it '
            'with tools/prune.py, or use a criterion that does (sirfp, mtp)'
            ' or one that needs no data in PruningHook')

    def unwatch(self) -> None:
        """Stop learning (remove what :meth:`watch` attached)."""

    def state_dict(self) -> dict:
        """What was learned so far, for a checkpoint. Every rank calls it
        (it may average over ranks)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (after :meth:`watch`)."""

    def finish(self, model: nn.Module) -> None:
        """This criterion's pruning step has pruned ``model`` (the model the
        runner trains); also called when a resumed run restores a model
        after that step."""

    def score_group(self, graph: SegmentorGraph,
                    group: ChannelGroup) -> torch.Tensor:
        """Scores of one group's channels, shape ``(group.size,)``."""
        raise NotImplementedError


def reduce_members(graph: SegmentorGraph, group: ChannelGroup,
                   scored: Callable[[nn.Module], bool],
                   channel_score: Callable[[nn.Module], torch.Tensor]
                   ) -> torch.Tensor:
    """Average a per-output-channel score over a group's members.

    Args:
        graph (SegmentorGraph): The graph ``group`` belongs to.
        group (ChannelGroup): The group.
        scored (callable): Module -> whether it is scored (a
            :mod:`~mmseg_prune.structure.layer_rules` rule).
        channel_score (callable): Module -> one score per output channel.

    Returns:
        Tensor: Mean score per group channel (zero where no member scored).
    """
    total = torch.zeros(group.size, dtype=torch.float64)
    count = torch.zeros(group.size, dtype=torch.float64)
    for member in group.members:
        module = graph.modules[member.name]
        if member.dim != 'out' or not scored(module):
            continue
        values = channel_score(module).detach().double().cpu()
        root = torch.as_tensor(member.root_idxs, dtype=torch.long)
        total.index_add_(0, root, values[member.idxs])
        count.index_add_(0, root, torch.ones(len(root), dtype=torch.float64))
    return total / count.clamp(min=1)


def group_importance(importance, group: ChannelGroup) -> torch.Tensor:
    """A torch-pruning importance of one group's channels.

    torch-pruning reduces its members' scores onto the group's channels by
    their root indices, in a tensor as long as the first member's indices:
    the channels' scores are its first ``group.size`` entries (all of it,
    except in a head group, where each channel is a head of several
    indices).

    Args:
        importance: A ``torch_pruning.importance.Importance``.
        group (ChannelGroup): The group.

    Returns:
        Tensor: One score per channel (zeros when torch-pruning scores no
        member).
    """
    score = importance(group.tp_group)
    return torch.zeros(group.size) if score is None else score[:group.size]
