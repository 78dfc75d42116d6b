"""A criterion that learns during training is one file and a registration:
PruningHook drives it without knowing it."""
import copy
import os.path as osp

import torch
from mmengine.runner import Runner

from mmseg_prune.analysis import count_complexity
from mmseg_prune.criteria import BaseCriterion
from mmseg_prune.models import trained_segmentor
from mmseg_prune.registry import PRUNING_CRITERIA
from mmseg_prune.structure import output_layers
from tests.helpers import small_voc_config


@PRUNING_CRITERIA.register_module()
class MeanActivationCriterion(BaseCriterion):
    """Keeps the channels with the largest mean |output| in training."""

    requires_data = True
    learns_during_training = True

    def __init__(self):
        self.sums, self.steps, self.handles = {}, {}, []
        self.finished = 0

    def watch(self, model, graph):
        modules = dict(trained_segmentor(model).named_modules())
        for group in graph.groups:
            for member in output_layers(graph, group):
                self.handles.append(modules[member.name].register_forward_hook(
                    self._hook(member.name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            if module.training:
                value = output.detach().abs().mean((0, 2, 3))
                self.sums[name] = self.sums.get(name, 0) + value
                self.steps[name] = self.steps.get(name, 0) + 1
        return hook

    def unwatch(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def state_dict(self):
        return dict(sums=dict(self.sums), steps=dict(self.steps))

    def load_state_dict(self, state):
        self.sums, self.steps = dict(state['sums']), dict(state['steps'])

    def finish(self, model):
        self.finished += 1

    def score_group(self, graph, group):
        score = torch.zeros(group.size)
        for member in output_layers(graph, group):
            mean = self.sums[member.name] / self.steps[member.name]
            score[member.root_idxs] = mean[member.idxs].float()
        return score


def test_a_new_training_time_criterion_needs_no_hook_change(demo_root,
                                                            tmp_path):
    cfg = small_voc_config(demo_root, 64)
    cfg.pop('pruning')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4,
                         val_interval=1000)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=2)
    cfg.custom_hooks = [dict(type='PruningHook',
                             criterion='MeanActivationCriterion',
                             schedule=[dict(iter=3, flops_reduction=0.4)])]
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'PruningHook')
    criterion = hook.criteria[0]
    runner.train()
    # It watched iterations 0-2, then pruned and let go of the model.
    assert set(criterion.steps.values()) == {3}
    assert criterion.handles == [] and criterion.finished == 1
    assert hook.steps_done == 1
    # Its state rode in the checkpoint saved while it watched.
    state = torch.load(osp.join(tmp_path, 'iter_2.pth'))['meta'][
        'mmseg_prune']['criterion_state']
    assert set(state['steps'].values()) == {2}
    # Its scores pruned the model to the step's budget.
    flops = count_complexity(copy.deepcopy(runner.model).eval(),
                             (64, 64)).flops
    assert abs(1 - flops / hook.dense_flops - 0.4) <= 0.005
