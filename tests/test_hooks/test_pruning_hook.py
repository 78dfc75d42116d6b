"""PruningHook prunes the live model inside a training run and resumes."""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from mmseg_prune.analysis import count_complexity
from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.hooks import PruningHook
from mmseg_prune.utils import PruneError

from tests.helpers import (PruneProbe, small_segmenter_config,
                           small_voc_config, trained_after_the_last_step)

SIZE = 64
# SIRFP's recipe: the edge score first, then the gradient variant.
SCHEDULE = [dict(iter=2, flops_reduction=0.3),
            dict(iter=4, flops_reduction=0.5,
                 criterion=dict(type='SIRFPCriterion', gradient_weight=0.4,
                                momentum=0.9))]


def _config(work_dir, demo_root, max_iters):
    """FCN R18 (with an aux head) on the generated VOC data at 64x64."""
    cfg = small_voc_config(demo_root, SIZE)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=1000)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = [dict(type='PruningHook', schedule=SCHEDULE,
                             criterion=dict(type='sirfp', momentum=0.9)),
                        dict(type='PruneProbe')]
    cfg.work_dir = str(work_dir)
    cfg.pop('pruning')
    return cfg


def _structure(checkpoint):
    return torch.load(checkpoint)['meta']['mmseg_prune']['pruned_structure']


def _reduction(model, dense_flops):
    model = model.module if hasattr(model, 'module') else model
    flops = count_complexity(copy.deepcopy(model).cpu().eval(),
                             (SIZE, SIZE)).flops
    return 1 - flops / dense_flops


@pytest.fixture(scope='module')
def trained(tmp_path_factory, demo_root):
    work_dir = tmp_path_factory.mktemp('hook')
    cfg = _config(work_dir, demo_root, max_iters=5)
    dense_flops = count_complexity(build_segmentor(cfg), (SIZE, SIZE)).flops
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, str(work_dir), dense_flops


def test_prunes_at_the_scheduled_iterations(trained):
    runner, work_dir, dense_flops = trained
    assert abs(_reduction(runner.model, dense_flops) - 0.5) <= 0.005
    probe = next(h for h in runner.hooks if isinstance(h, PruneProbe))
    # The first step's 30% is counted on the model it left.
    assert abs(1 - probe.flops[1] / dense_flops - 0.3) <= 0.005
    assert abs(1 - probe.flops[2] / dense_flops - 0.5) <= 0.005
    # The optimizer holds every parameter after each step, and training
    # went on after the last one.
    assert probe.optimized == {1: True, 2: True}
    assert trained_after_the_last_step(runner)
    # iter_2 was saved before the first step, iter_4 between the two.
    steps = {
        name: torch.load(osp.join(work_dir, name))['meta']['mmseg_prune']
        ['steps_done'] for name in ('iter_2.pth', 'iter_4.pth', 'iter_5.pth')
    }
    assert steps == {'iter_2.pth': 0, 'iter_4.pth': 1, 'iter_5.pth': 2}
    # Before the second step the hook gathers the gradient term too.
    stats = torch.load(osp.join(work_dir, 'iter_4.pth'))['meta'][
        'mmseg_prune']['criterion_state']
    assert stats['gradient'] and stats['redundancy'].keys() == \
        stats['gradient'].keys()
    assert all(g.sum() > 0 for g in stats['gradient'].values())
    assert stats['counts']['backbone.stem.1'] == 2  # iterations 3 and 4
    assert runner.iter == 5
    # Each step's figures reach the message hub (log and visualizers).
    hub = runner.message_hub
    assert hub.get_scalar('train/flops_reduction').current() == \
        pytest.approx(_reduction(runner.model, dense_flops), abs=1e-6)
    assert hub.get_scalar('train/pruned_gflops').current() == \
        pytest.approx(dense_flops * (1 - _reduction(runner.model,
                                                     dense_flops)) / 1e9)
    assert 0 < hub.get_scalar('train/kept_channel_share').current() < 1


def test_written_config_rebuilds_the_trained_model(trained):
    runner, work_dir, _ = trained
    cfg = load_config(osp.join(work_dir, 'pruned_config.py'))
    # The pruning hook is gone; the run's other hooks stay.
    assert [h['type'] for h in cfg.custom_hooks] == ['PruneProbe']
    rebuilt = build_segmentor(cfg, osp.join(work_dir, 'iter_5.pth'))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt._forward(x),
                                   runner.model.eval()._forward(x))


def _pruner(runner):
    return next(h for h in runner.hooks if isinstance(h, PruningHook))


def test_resume_after_a_pruning_step(trained, demo_root, tmp_path):
    uninterrupted, work_dir, dense_flops = trained
    cfg = _config(tmp_path, demo_root, max_iters=6)
    cfg.resume = True
    cfg.load_from = osp.join(work_dir, 'iter_4.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 6
    assert 'iter_6.pth' in os.listdir(tmp_path)
    assert abs(_reduction(runner.model, dense_flops) - 0.5) <= 0.005
    # The checkpoint carried the second window's statistics: the resumed
    # run decided from the same counts and kept the same channels as the
    # uninterrupted one.
    first, resumed = _pruner(uninterrupted), _pruner(runner)
    assert resumed.criteria[1].statistics.counts == \
        first.criteria[1].statistics.counts
    assert set(first.criteria[1].statistics.counts.values()) == {2}
    assert len(resumed.kept_indices) == 1
    kept, expected = resumed.kept_indices[0], first.kept_indices[1]
    assert kept.keys() == expected.keys()
    for group in expected:
        assert torch.equal(kept[group], expected[group]), group
    assert _structure(osp.join(tmp_path, 'iter_6.pth')) == \
        _structure(osp.join(work_dir, 'iter_5.pth'))


@pytest.mark.parametrize('schedule', [
    [], [dict(iter=4, flops_reduction=0.3), dict(iter=2, flops_reduction=0.5)],
    [dict(iter=2, flops_reduction=1.5)], [dict(flops_reduction=0.5)]
])
def test_bad_schedules(schedule):
    with pytest.raises(PruneError, match='schedule must be'):
        PruningHook(schedule)


def test_criteria_needing_batches_are_refused():
    with pytest.raises(PruneError, match='tools/prune.py'):
        PruningHook([dict(iter=1, flops_reduction=0.5)], criterion='taylor')


def test_prunes_a_model_with_split_attention_again(demo_root, tmp_path):
    """A pruned transformer (its attention split into heads by
    tools/prune.py) fine-tuned with another pruning step: the hook's
    config names the split attention and rebuilds the trained model."""
    from mmseg_prune.apis import build_report, prune_segmentor, save_pruned
    from mmseg_prune.structure import has_split_attention
    cfg = small_voc_config(demo_root, SIZE)
    cfg.pop('pruning')
    cfg.model = small_segmenter_config(SIZE).model
    cfg.model.decode_head.num_classes = 21
    result = prune_segmentor(build_segmentor(cfg), 'l1', 0.3, (SIZE, SIZE))
    paths = save_pruned(result, cfg, str(tmp_path / 'pruned'),
                        build_report(result, 'l1', 0.3))
    tune = load_config(paths['config'])
    assert tune.model.split_attention
    tune.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                          val_interval=1000)
    tune.default_hooks.checkpoint = dict(type='CheckpointHook',
                                         by_epoch=False, interval=2)
    tune.custom_hooks = [dict(type='PruningHook', criterion='l1',
                              schedule=[dict(iter=1, flops_reduction=0.5)])]
    tune.work_dir = str(tmp_path / 'tune')
    runner = Runner.from_cfg(tune)
    runner.train()
    model = runner.model.eval()
    assert has_split_attention(model)
    assert _reduction(model, result.pruned.flops) == pytest.approx(0.5,
                                                                   abs=0.005)
    written = load_config(osp.join(tune.work_dir, 'pruned_config.py'))
    assert written.model.split_attention
    rebuilt = build_segmentor(written, osp.join(tune.work_dir, 'iter_2.pth'))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt._forward(x), model._forward(x))
