"""The pruning engine: score a graph's channels, meet the FLOPs or latency
budget, and cut a pruned copy."""
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn

from ..analysis import (Complexity, LatencyTable, LatencyTimer,
                        count_complexity)
from ..criteria import CRITERIA_ALIASES, BaseCriterion
from ..registry import PRUNING_CRITERIA
from ..structure import SegmentorGraph, forward_all_heads, split_attention
from ..structure.bias_compensation import compensated_biases
from ..structure.layer_rules import is_weight_layer
from ..utils.errors import PruneError
from .estimators import FlopsEstimator, LatencyEstimator
from .flops_budget import FlopsBudget


def build_criterion(criterion) -> BaseCriterion:
    """A criterion from a short name (``'l1'``), a type name or a dict."""
    if isinstance(criterion, BaseCriterion):
        return criterion
    cfg = dict(type=criterion) if isinstance(criterion, str) else \
        dict(criterion)
    cfg['type'] = CRITERIA_ALIASES.get(cfg['type'], cfg['type'])
    if cfg['type'] not in PRUNING_CRITERIA.module_dict:
        known = ', '.join(sorted(CRITERIA_ALIASES))
        raise PruneError(f'unknown criterion "{criterion}"; choose one of '
                         f'{known} (or a registered type name)')
    cfg['_scope_'] = 'mmseg_prune'
    try:
        return PRUNING_CRITERIA.build(cfg)
    except TypeError as exc:
        raise PruneError(f'criterion {cfg["type"]} does not take these '
                         f'arguments: {exc}; check its docstring for the '
                         'ones it takes') from exc


@dataclass
class PruneResult:
    """What :func:`prune_segmentor` produced.

    Attributes:
        model (nn.Module): The physically pruned segmentor.
        keep (dict[str, Tensor]): Group name -> kept channel indices.
        dense (Complexity): Count of the dense model.
        pruned (Complexity): Count of the pruned model.
        layers (dict[str, list[int]]): Conv/linear layer -> [kept, total]
            output channels.
        round_to (int): The channel multiple the budget kept (its
            ``round_to`` after any halving; 1 without rounding).
        latency (dict | None): For a latency budget, the timing of dense
            and pruned (``dense_ms``, ``pruned_ms``, their ``*_spread``, the
            ``reduction``), the device, the latency table's file, and the
            layer timings it gained (``timed_layers``, ``table_seconds``).
    """
    model: nn.Module
    keep: Dict[str, torch.Tensor]
    dense: Complexity
    pruned: Complexity
    layers: Dict[str, list] = field(default_factory=dict)
    round_to: int = 1
    latency: Optional[dict] = None

    @property
    def achieved_reduction(self) -> float:
        return 1 - self.pruned.flops / self.dense.flops


def _layer_table(dense: nn.Module, pruned: nn.Module) -> Dict[str, list]:
    dense_modules = dict(dense.named_modules())
    layers = {}
    for name, module in pruned.named_modules():
        if is_weight_layer(module):
            before = dense_modules[name]
            out = 'out_channels' if hasattr(module, 'out_channels') else \
                'out_features'
            layers[name] = [getattr(module, out), getattr(before, out)]
    return layers


def _output_shapes(model: nn.Module, inputs: torch.Tensor) -> list:
    """Shapes of every head output; a failure names the module it hit."""
    from torch_pruning.utils import flatten_as_list
    entered = []
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: entered.append(name))
        for name, module in model.named_modules() if name
    ]
    try:
        with torch.no_grad():
            outputs = forward_all_heads(model.eval(), inputs)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        where = entered[-1] if entered else 'the model'
        raise PruneError(
            f'the pruned model fails in module "{where}" '
            f'({type(exc).__name__}: {exc}); this model family uses channel '
            'counts the dependency graph cannot see, so it is not supported '
            f'yet: add "{where.rsplit(".", 1)[0]}*" to pruning.ignore to '
            'keep that part whole') from exc
    finally:
        for hook in hooks:
            hook.remove()
    return [tuple(t.shape) for t in flatten_as_list(outputs)]


def _check_outputs(pruned: nn.Module, inputs: torch.Tensor,
                   expected: list) -> None:
    """Every head's output keeps its dense shape after pruning."""
    for before, after in zip(expected, _output_shapes(pruned, inputs)):
        if before != after:
            raise PruneError(
                f'pruning changed a head output from {before} to {after}; '
                'add the layer producing it to pruning.ignore')


def check_finite_weights(model: nn.Module) -> None:
    """Refuse a model with NaN or Inf weights before any criterion runs
    (some rank such channels like any other and would save them)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise PruneError(
                f'the model has non-finite values (NaN or Inf) in {name}; '
                'the checkpoint is broken: pass one from before training '
                'diverged')


def prune_segmentor(model: nn.Module, criterion, reduction: float,
                    input_shape: Sequence[int],
                    batches: Optional[Iterable[dict]] = None,
                    ignore: Sequence[str] = (),
                    budget: Optional[dict] = None,
                    bias_compensation: Optional[bool] = None) -> PruneResult:
    """Prune a dense segmentor so that it loses ``reduction`` of its FLOPs
    (or, with ``budget=dict(cost='latency')``, of its measured latency).

    The result is a pruned copy. The dense model keeps its weights and
    outputs, but its ``nn.MultiheadAttention`` layers become
    :class:`~mmseg_prune.structure.SplitHeadAttention` (the same function),
    so that whole heads can be pruned.

    Args:
        model (nn.Module): The segmentor (CPU, SyncBN reverted).
        criterion: Criterion name, config dict or instance.
        reduction (float): Fraction of the FLOPs (MACs), or of the latency,
            to remove.
        input_shape (tuple[int, int]): (H, W) at which FLOPs are counted.
        batches (Iterable[dict], optional): Calibration data for criteria
            that need it.
        ignore (Sequence[str]): Patterns of modules never to prune.
        budget (dict, optional): Keyword arguments of
            :class:`~mmseg_prune.pruner.FlopsBudget`.
        bias_compensation (bool, optional): Fold what removed channels fed
            the next layers into their biases
            (:mod:`~mmseg_prune.structure.bias_compensation`). Default: the
            criterion's ``bias_compensation`` (True for SIRFP).

    Returns:
        PruneResult: The pruned model and its figures.
    """
    criterion = build_criterion(criterion)
    if bias_compensation is None:
        bias_compensation = criterion.bias_compensation
    budget = FlopsBudget(reduction,
                         **{**criterion.budget_defaults, **(budget or {})})
    if criterion.requires_data and batches is None:
        raise PruneError(f'criterion {type(criterion).__name__} needs data; '
                         'give the config a train_dataloader (--data-root)')
    check_finite_weights(model)
    split_attention(model)
    graph = SegmentorGraph(model, input_shape, ignore)
    try:
        scores = criterion(graph,
                           batches if criterion.requires_data else None)
    except (PruneError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the data, mostly
        raise PruneError(
            f'criterion {type(criterion).__name__} failed on the calibration'
            f' data: {type(exc).__name__}: {exc}; check that every image has'
            ' its mask and that labels are below num_classes (or 255)'
        ) from exc
    return prune_graph(graph, scores, budget,
                       bias_compensation=bias_compensation)


def prune_graph(graph: SegmentorGraph, scores: Dict[str, torch.Tensor],
                budget: FlopsBudget, dense: Optional[Complexity] = None,
                bias_compensation: bool = False,
                latency_table: Optional[LatencyTable] = None) -> PruneResult:
    """Prune a copy of ``graph.model`` by ``scores`` to ``budget``.

    Args:
        graph (SegmentorGraph): Groups of the model to prune.
        scores (dict[str, Tensor]): Group name -> channel scores.
        budget (FlopsBudget): The FLOPs or latency target, relative to
            ``graph.model``.
        dense (Complexity, optional): ``graph.model``'s count at
            ``graph.input_shape``, when the caller has it already.
        bias_compensation (bool): Fold removed channels' contributions into
            the next biases. Default: False.
        latency_table (LatencyTable, optional): For a latency budget, the
            table to read layer latencies from. Default: the cached table
            of the device timed on.

    Returns:
        PruneResult: The pruned copy and its figures.
    """
    input_shape = graph.input_shape
    dense = dense or count_complexity(graph.model, input_shape)
    inputs = graph.example_inputs()
    expected = graph.output_shapes
    measured = {}  # id(plan) -> the pruned model and its figures
    timer = None
    estimator = FlopsEstimator(graph, dense)
    if budget.cost == 'latency':
        timer = LatencyTimer(graph.model, input_shape)
        estimator = LatencyEstimator(
            graph, latency_table or LatencyTable(timer.device),
            timer.dense_ms, estimator)

    def measure(keep):
        with compensated_biases(graph, keep) if bias_compensation \
                else nullcontext():
            candidate = graph.prune(keep)
        _check_outputs(candidate, inputs, expected)
        figures = measured[id(keep)] = dict(
            keep=keep, model=candidate,
            complexity=count_complexity(candidate, input_shape))
        if timer is None:
            return 1 - figures['complexity'].flops / dense.flops
        figures['latency'] = timer.compare(candidate)
        return figures['latency']['reduction']

    try:
        keep = budget.select(graph, scores, estimator, measure)
    finally:
        if timer is not None:
            estimator.table.save()
    chosen = measured[id(keep)]
    latency = None
    if timer is not None:
        latency = dict(chosen['latency'], device=timer.device.type,
                       table=estimator.table.path,
                       timed_layers=estimator.table.measured,
                       table_seconds=estimator.table.seconds)
    return PruneResult(
        model=chosen['model'],
        keep=keep,
        dense=dense,
        pruned=chosen['complexity'],
        layers=_layer_table(graph.model, chosen['model']),
        round_to=budget.used_round_to or 1,
        latency=latency)

