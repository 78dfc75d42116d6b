"""Prune the live model at scheduled iterations of an mmseg training run."""
import copy
import gc
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..analysis import count_complexity, default_input_shape
from ..models import dense_reference, pruned_config, trained_segmentor
from ..pruner import FlopsBudget, build_criterion, prune_graph
from ..structure import (SegmentorGraph, apply_architecture,
                         extract_architecture, has_split_attention)
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
    (MACs) in all, at ``input_shape``. A criterion that learns during
    training (``learns_during_training``: SIRFP's statistics, MTP's search)
    watches the run until its step and decides the same channels on every
    rank; criteria without data (l1, fpgm...) score the weights at that
    moment.

    The parameters are resized in place, so the optimizer, its parameter
    schedulers and the learning-rate schedule carry on; optimizer state
    (momentum) of resized parameters restarts; a DDP wrapper is rebuilt.
    Checkpoints record the pruned structure, which resuming or ``load_from``
    restores before the weights load, and what the watching criterion has
    learned so far (its ``state_dict``: SIRFP's statistics, averaged over
    ranks, about 120 MB for DeepLabV3 R50), so a resumed run decides as the
    uninterrupted one would. After each step the hook writes
    ``pruned_config.py`` into the work dir: with a checkpoint of this run it
    is a complete config for mmseg's tools/test.py.

    Args:
        schedule (list[dict]): Steps ``dict(iter=k, flops_reduction=r)``,
            iterations increasing, reductions increasing in (0, 1); a step
            may name its own ``criterion`` (SIRFP's second stage uses the
            gradient variant).
        criterion (str | dict): A registered criterion for steps naming
            none. Criteria that need calibration batches but do not learn
            during training (taylor) are for tools/prune.py.
            Default: ``'sirfp'``.
        input_shape (tuple[int, int], optional): Where FLOPs are counted.
            Default: the config's crop size.
        ignore (Sequence[str]): Module patterns never pruned.
        budget (dict, optional): :class:`~mmseg_prune.pruner.FlopsBudget`
            arguments over the criterion's defaults.
        bias_compensation (bool, optional): Fold removed channels into the
            next biases. Default: the criterion's (True for SIRFP).
    """

    priority = 'VERY_HIGH'

    def __init__(self, schedule: Sequence[dict], criterion='sirfp',
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
            if built.requires_data and not built.learns_during_training:
                raise PruneError(
                    f'{type(built).__name__} needs calibration batches, '
                    'which PruningHook does not feed; prune with '
                    'tools/prune.py or use sirfp, mtp or a data-free '
                    'criterion here')
        self.input_shape = input_shape
        self.ignore = list(ignore)
        self.budget = dict(budget or {})
        if self.budget.get('cost', 'flops') != 'flops':
            raise PruneError(
                'PruningHook prunes to FLOPs targets during training; prune '
                'to a latency target with tools/prune.py --latency-reduction')
        self.bias_compensation = bias_compensation
        self.steps_done = 0
        #: Group name -> kept channel indices, per step this run decided.
        self.kept_indices = []
        self.dense_flops = None
        self.watching = None  # the criterion learning from the run
        self._resumed_state = None
        self._dense_reference = None

    # -- state carried by checkpoints ------------------------------------
    def _reference(self, runner):
        """The dense architecture on the meta device (shapes only), with
        split attention where the trained model has it (a pruned config)."""
        if self._dense_reference is None:
            self._dense_reference = dense_reference(
                runner.cfg, trained_segmentor(runner.model)).to('meta')
        return self._dense_reference

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Every rank saves checkpoints through this hook, so a criterion
        # may average over ranks here.
        learned = self.watching.state_dict() \
            if self.watching is not None else None
        checkpoint.setdefault('meta', {})[META_KEY] = dict(
            pruned_structure=extract_architecture(
                self._reference(runner), trained_segmentor(runner.model)),
            steps_done=self.steps_done,
            dense_flops=self.dense_flops,
            criterion_state=learned)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('meta', {}).get(META_KEY)
        if not state:
            return
        self._reference(runner)
        apply_architecture(trained_segmentor(runner.model),
                           state['pruned_structure'])
        self.steps_done = state['steps_done']
        self.dense_flops = state['dense_flops']
        # 'statistics': checkpoints of mmseg-prune 0.1 (SIRFP only).
        self._resumed_state = state.get('criterion_state',
                                        state.get('statistics'))
        for criterion in self.criteria[:self.steps_done]:
            criterion.finish(runner.model)
        runner.logger.info(
            f'PruningHook: restored the structure after '
            f'{self.steps_done} pruning step(s)')

    # -- training ----------------------------------------------------------
    def before_train(self, runner) -> None:
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
        model = copy.deepcopy(trained_segmentor(runner.model)).cpu()
        return model.eval()

    def _graph(self, runner) -> SegmentorGraph:
        return SegmentorGraph(self._cpu_copy(runner), self.input_shape,
                              self.ignore)

    def _watch(self, runner) -> None:
        """Let the next step's criterion learn from the run, if it does."""
        self._unwatch()
        if self.steps_done >= len(self.schedule):
            return
        criterion = self.criteria[self.steps_done]
        if not criterion.learns_during_training:
            return
        criterion.watch(runner.model, self._graph(runner))
        if self._resumed_state is not None:
            criterion.load_state_dict(self._resumed_state)
            self._resumed_state = None
        self.watching = criterion

    def _unwatch(self) -> None:
        if self.watching is not None:
            self.watching.unwatch()
        self.watching = None

    def _prune(self, runner, step: dict) -> None:
        graph = self._graph(runner)
        criterion = self.criteria[self.steps_done]
        # A criterion that watched the run scores what it learned (MTP
        # folds its scores into the copy, which is pruned and loaded back).
        scores = criterion.score(graph) if criterion is self.watching \
            else criterion(graph)
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
            self.kept_indices.append(result.keep)
            self._apply(runner, graph.model, result.model)
            criterion.finish(runner.model)
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
        model = trained_segmentor(runner.model)
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
        reference = self._reference(runner)
        structure = extract_architecture(reference,
                                         trained_segmentor(runner.model))
        cfg = pruned_config(runner.cfg, structure, None,
                            split_attention=has_split_attention(reference))
        if runner.rank == 0:
            atomic_write_text(osp.join(runner.work_dir, 'pruned_config.py'),
                              cfg.pretty_text)

