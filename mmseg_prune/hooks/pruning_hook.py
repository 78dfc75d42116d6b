"""Prune the live model at scheduled iterations of an mmseg training run."""
import copy
import gc
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..analysis import count_complexity
from ..apis.config import default_input_shape
from ..apis.model import build_segmentor
from ..apis.prune import build_criterion, prune_graph, pruned_config
from ..budget import FlopsBudget
from ..criteria import MTPCriterion, SIRFPCriterion
from ..models import mtp_wrapper
from ..structure.graph import output_layers
from ..statistics import RedundancyStatistics
from ..structure import (SegmentorGraph, apply_architecture,
                         extract_architecture)
from ..utils.cli import human
from ..utils.errors import PruneError
from ..utils.io import atomic_write_text

#: Key of the hook's state in a checkpoint's ``meta``.
META_KEY = 'mmseg_prune'


@HOOKS.register_module()
class PruningHook(Hook):
    """Prune the model in place at scheduled iterations, then train on.

    Before iteration ``k`` of each step ``dict(iter=k, flops_reduction=r)``
    the model is pruned so that it has lost ``r`` of the dense model's FLOPs
    (MACs) in all, at ``input_shape``. SIRFP's statistics are collected from
    the training forward passes (an EMA on every rank, all-reduced when a
    step decides, so every rank prunes the same channels); criteria without
    data (l1, fpgm...) score the weights at that moment.

    The parameters are resized in place, so the optimizer, its parameter
    schedulers and the learning-rate schedule carry on; optimizer state
    (momentum) of resized parameters restarts; a DDP wrapper is rebuilt.
    Checkpoints record the pruned structure, which resuming or ``load_from``
    restores before the weights load, and the statistics gathered so far
    (averaged over ranks; for DeepLabV3 R50 about 120 MB), so a resumed run
    decides as the uninterrupted one would. After each step the hook writes
    ``pruned_config.py`` into the work dir: with a checkpoint of this run it
    is a complete config for mmseg's tools/test.py.

    Args:
        schedule (list[dict]): Steps ``dict(iter=k, flops_reduction=r)``,
            iterations increasing, reductions increasing in (0, 1); a step
            may name its own ``criterion`` (SIRFP's second stage uses the
            gradient variant).
        criterion (str | dict): A registered criterion for steps naming
            none. Criteria that need calibration batches other than SIRFP
            are for tools/prune.py. Default: ``'sirfp'``.
        momentum (float): EMA rate of SIRFP's statistics. Default: 0.999.
        input_shape (tuple[int, int], optional): Where FLOPs are counted.
            Default: the config's crop size.
        ignore (Sequence[str]): Module patterns never pruned.
        budget (dict, optional): :class:`~mmseg_prune.budget.FlopsBudget`
            arguments over the criterion's defaults.
        bias_compensation (bool, optional): Fold removed channels into the
            next biases. Default: the criterion's (True for SIRFP).
    """

    priority = 'VERY_HIGH'

    def __init__(self, schedule: Sequence[dict], criterion='sirfp',
                 momentum: float = 0.999,
                 input_shape: Optional[Sequence[int]] = None,
                 ignore: Sequence[str] = (), budget: Optional[dict] = None,
                 bias_compensation: Optional[bool] = None):
        steps = [dict(step) for step in schedule]
        iters = [s.get('iter') for s in steps]
        reductions = [s.get('flops_reduction') for s in steps]
        if not steps or None in iters or None in reductions or \
                iters != sorted(set(iters)) or \
                reductions != sorted(set(reductions)) or \
                not all(0 < r < 1 for r in reductions):
            raise PruneError(
                'PruningHook schedule must be a list of dict(iter=k, '
                'flops_reduction=r) with increasing iterations and '
                f'increasing reductions in (0, 1), got {list(schedule)}')
        self.schedule = steps
        self.criteria = [build_criterion(s.get('criterion', criterion))
                         for s in steps]
        for built in self.criteria:
            if built.requires_data and not isinstance(
                    built, (SIRFPCriterion, MTPCriterion)):
                raise PruneError(
                    f'{type(built).__name__} needs calibration batches, '
                    'which PruningHook does not feed; prune with '
                    'tools/prune.py or use sirfp, mtp or a data-free '
                    'criterion here')
        self.momentum = momentum
        self.input_shape = input_shape
        self.ignore = list(ignore)
        self.budget = dict(budget or {})
        self.bias_compensation = bias_compensation
        self.steps_done = 0
        self.dense_flops = None
        self.statistics: Optional[RedundancyStatistics] = None
        self._resumed_statistics = None
        self._dense_reference = None

    # -- state carried by checkpoints ------------------------------------
    def _reference(self, runner):
        """The dense architecture on the meta device (shapes only)."""
        if self._dense_reference is None:
            self._dense_reference = build_segmentor(
                runner.cfg, dense=True).to('meta')
        return self._dense_reference

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        statistics = None
        if self.statistics is not None:
            # Every rank saves checkpoints through this hook, so they can
            # average here; the EMA goes on from the average, which leaves
            # the average at the next step unchanged (it is linear).
            self.statistics.synchronize()
            statistics = self.statistics.state_dict()
        wrapper = mtp_wrapper(runner.model)
        if wrapper is not None and not wrapper.searching:
            # After MTP's search the run trains the plain segmentor: save it
            # as one, so the checkpoint fits pruned_config.py.
            checkpoint['state_dict'] = wrapper.segmentor_state_dict(
                checkpoint['state_dict'])
        checkpoint.setdefault('meta', {})[META_KEY] = dict(
            pruned_structure=extract_architecture(
                self._reference(runner), _unwrap(runner.model)),
            steps_done=self.steps_done,
            dense_flops=self.dense_flops,
            statistics=statistics)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get(META_KEY)
        if not state:
            return
        self._reference(runner)
        model = _unwrap(runner.model)
        apply_architecture(model, state['pruned_structure'])
        self.steps_done = state['steps_done']
        self.dense_flops = state['dense_flops']
        self._resumed_statistics = state.get('statistics')
        wrapper = mtp_wrapper(runner.model)
        if wrapper is not None and any(
                isinstance(c, MTPCriterion)
                for c in self.criteria[:self.steps_done]):
            wrapper.finish_search()
        runner.logger.info(
            f'PruningHook: restored the structure after '
            f'{self.steps_done} pruning step(s)')

    # -- training ----------------------------------------------------------
    def before_train(self, runner) -> None:
        if any(isinstance(c, MTPCriterion) for c in self.criteria) and \
                mtp_wrapper(runner.model) is None:
            model = type(_unwrap(runner.model)).__name__
            raise PruneError(
                'PruningHook with the mtp criterion needs model=dict('
                'type="MTPSegmentor", segmentor=...) and an MTPHook in the '
                f'config; the model is a {model}')
        self.input_shape = tuple(self.input_shape
                                 or default_input_shape(runner.cfg))
        self._reference(runner)
        if self.dense_flops is None:
            self.dense_flops = count_complexity(
                self._cpu_copy(runner), self.input_shape).flops
        self._watch(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.steps_done < len(self.schedule) and \
                runner.iter >= self.schedule[self.steps_done]['iter']:
            self._prune(runner, self.schedule[self.steps_done])

    def after_train(self, runner) -> None:
        self._unwatch()

    def _cpu_copy(self, runner):
        model = copy.deepcopy(_unwrap(runner.model)).cpu()
        return model.eval()

    def _graph(self, runner) -> SegmentorGraph:
        return SegmentorGraph(self._cpu_copy(runner), self.input_shape,
                              self.ignore)

    def _watch(self, runner) -> None:
        """Collect SIRFP's statistics while pruning steps remain."""
        self._unwatch()
        if self.steps_done >= len(self.schedule):
            return
        criterion = self.criteria[self.steps_done]
        if not isinstance(criterion, SIRFPCriterion):
            return
        graph = self._graph(runner)
        names = sorted({m.name for g in graph.groups
                        for m in output_layers(graph, g)})
        self.statistics = RedundancyStatistics(
            _unwrap(runner.model), names, momentum=self.momentum,
            training_only=True,
            gradients=criterion.gradient_weight is not None)
        if self._resumed_statistics is not None:
            self.statistics.load_state_dict(self._resumed_statistics)
            self._resumed_statistics = None

    def _unwatch(self) -> None:
        if self.statistics is not None:
            self.statistics.remove()
        self.statistics = None

    def _prune(self, runner, step: dict) -> None:
        graph = self._graph(runner)
        criterion = self.criteria[self.steps_done]
        if self.statistics is not None:
            self.statistics.synchronize()
            criterion.statistics = self.statistics
            scores = criterion.score(graph)
        elif isinstance(criterion, MTPCriterion):
            # The run searched the scores: fold them into the copy, which is
            # pruned and loaded back; the search ends here.
            criterion.model = mtp_wrapper(runner.model)
            scores = criterion.score(graph)
        else:
            scores = criterion(graph)
        current = count_complexity(graph.model, self.input_shape)
        target = 1 - (1 - step['flops_reduction']) * self.dense_flops / \
            current.flops
        if target <= 0:
            runner.logger.warning(
                f'PruningHook: the model has already lost '
                f'{step["flops_reduction"]:.0%} of its FLOPs; step skipped')
        else:
            budget = FlopsBudget(
                target, **{**criterion.budget_defaults, **self.budget})
            compensate = criterion.bias_compensation \
                if self.bias_compensation is None else self.bias_compensation
            result = prune_graph(graph, scores, budget, dense=current,
                                 bias_compensation=compensate)
            self._apply(runner, graph.model, result.model)
            self._log_scalars(runner, result)
            runner.logger.info(
                f'PruningHook: pruned at iteration {runner.iter}: FLOPs '
                f'(MACs) at 1x3x{self.input_shape[0]}x{self.input_shape[1]} '
                f'{human(self.dense_flops)} dense -> '
                f'{human(result.pruned.flops)} '
                f'({1 - result.pruned.flops / self.dense_flops:.1%} removed; '
                f'target {step["flops_reduction"]:.0%}), params '
                f'{human(result.pruned.params)}')
        self.steps_done += 1
        self._write_config(runner)
        self._watch(runner)

    def _log_scalars(self, runner, result) -> None:
        """FLOPs, params and kept share through the message hub, so that
        the runner's log and its visualizer backends (TensorBoard, W&B)
        show them as scalars from this step on."""
        kept = sum(k for k, _ in result.layers.values())
        total = sum(t for _, t in result.layers.values())
        hub = runner.message_hub
        hub.update_scalar('train/pruned_gflops', result.pruned.flops / 1e9)
        hub.update_scalar('train/pruned_mparams',
                          result.pruned.params / 1e6)
        hub.update_scalar('train/kept_channel_share', kept / max(total, 1))
        hub.update_scalar('train/flops_reduction',
                          1 - result.pruned.flops / self.dense_flops)

    def _apply(self, runner, before, pruned) -> None:
        """Resize the live model to ``pruned`` and load its weights.

        A DDP wrapper is dropped first and rebuilt after: its reducer holds
        the parameters' gradient accumulators, which keep the old shapes
        while they live.
        """
        wrapped = is_model_wrapper(runner.model)
        if wrapped:
            runner.model = runner.model.module
            gc.collect()
        model = _unwrap(runner.model)
        shapes = {id(p): p.shape for p in model.parameters()}
        apply_architecture(model, extract_architecture(before, pruned))
        model.load_state_dict(pruned.state_dict())
        optimizer = runner.optim_wrapper.optimizer
        for group in optimizer.param_groups:
            for param in group['params']:
                if shapes.get(id(param)) != param.shape:
                    optimizer.state.pop(param, None)
        if wrapped:
            runner.model = runner.wrap_model(
                runner.cfg.get('model_wrapper_cfg'), runner.model)

    def _write_config(self, runner) -> None:
        structure = extract_architecture(self._reference(runner),
                                         _unwrap(runner.model))
        cfg = pruned_config(runner.cfg, structure, None)
        if runner.rank == 0:
            atomic_write_text(osp.join(runner.work_dir, 'pruned_config.py'),
                              cfg.pretty_text)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The segmentor trained, inside DDP and MTP wrappers."""
    wrapper = mtp_wrapper(model)
    if wrapper is not None:
        return wrapper.segmentor
    return model.module if is_model_wrapper(model) else model
