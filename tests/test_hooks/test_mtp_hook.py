"""MTP inside one training run: search, fold, prune, fine-tune, resume."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import HOOKS

from mmseg_prune.analysis import count_complexity
from mmseg_prune.apis import build_segmentor, load_config
from mmseg_prune.datasets import make_demo_classification
from mmseg_prune.models import MTPSegmentor
from mmseg_prune.utils import PruneError

from mmseg_prune.hooks import PruningHook
from tests.helpers import (PruneProbe, small_voc_config,
                           trained_after_the_last_step)

SIZE = 64
PRUNE_AT = 5


@HOOKS.register_module()
class TaskRecorder(Hook):
    """Records which losses every training iteration had."""

    priority = 'LOWEST'

    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(sorted(k for k in outputs if k != 'loss' and (
            k.startswith('loss') or k.endswith('loss_ce'))))


def _config(work_dir, demo_root, max_iters, cls_root=None):
    """MTP on FCN R18 (with an aux head), generated VOC data at 64x64."""
    cfg = small_voc_config(demo_root, SIZE)
    # No dropout: a resumed run draws other random numbers than the
    # uninterrupted one, and the resume test compares their decisions.
    cfg.model.decode_head.dropout_ratio = 0
    cfg.model.auxiliary_head.dropout_ratio = 0
    cfg.randomness = dict(seed=0)  # the same augmentations after resuming
    cfg.model = dict(type='MTPSegmentor', segmentor=cfg.model,
                     classifier=dict(num_classes=21), sparsity=1e-3)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=1000)
    cfg.optim_wrapper = dict(
        type='OptimWrapper', constructor='MTPOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=0.01, weight_decay=5e-4,
                       momentum=0.9),
        paramwise_cfg=dict(custom_keys={'gates': dict(lr_mult=10.0,
                                                      decay_mult=0.0)}))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=2)
    cfg.default_hooks.logger.interval = 1
    cls_dataloader = None if cls_root is None else dict(
        batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler',
                                                  shuffle=True),
        dataset=dict(type='ImageFolderDataset', data_root=cls_root,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='Resize', scale=(SIZE, SIZE)),
                               dict(type='PackClsInputs')]))
    cfg.custom_hooks = [
        dict(type='MTPHook', period=dict(seg=2, cls=1),
             cls_dataloader=cls_dataloader),
        dict(type='PruningHook', criterion='mtp',
             schedule=[dict(iter=PRUNE_AT, flops_reduction=0.5)]),
        dict(type='TaskRecorder'),
        dict(type='PruneProbe'),
    ]
    cfg.work_dir = str(work_dir)
    cfg.pop('pruning')
    return cfg


def _recorder(runner):
    return next(h for h in runner.hooks if isinstance(h, TaskRecorder))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, demo_root):
    work_dir = tmp_path_factory.mktemp('mtp')
    cls_root = str(tmp_path_factory.mktemp('cls') / 'train')
    make_demo_classification(cls_root, num=8, seed=0)
    cfg = _config(work_dir, demo_root, max_iters=7, cls_root=cls_root)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, str(work_dir)


def test_alternates_then_prunes_and_fine_tunes(trained):
    runner, _ = trained
    seg = ['aux.loss_ce', 'decode.loss_ce', 'loss_sparsity']
    cls = ['loss_cls', 'loss_sparsity']
    plain = ['aux.loss_ce', 'decode.loss_ce']
    assert _recorder(runner).losses == [seg, seg, cls, seg, seg, plain, plain]
    model = runner.model
    assert isinstance(model, MTPSegmentor) and not model.searching
    dense = count_complexity(
        build_segmentor(load_config(osp.join(runner.work_dir,
                                             'pruned_config.py')),
                        dense=True), (SIZE, SIZE)).flops
    pruned = count_complexity(copy.deepcopy(model.segmentor).eval(),
                              (SIZE, SIZE)).flops
    assert abs(1 - pruned / dense - 0.5) <= 0.005
    # Fine-tuning trains the weights, which the search kept frozen: all are
    # in the optimizer after the step and changed by the end of the run.
    assert all(p.requires_grad for p in model.segmentor.parameters())
    probe = next(h for h in runner.hooks if isinstance(h, PruneProbe))
    assert probe.optimized == {1: True}
    # The search's figures reached the message hub at every search step.
    hub = runner.message_hub
    mean = hub.get_scalar('train/mtp_mean_score')
    assert len(mean.data[0]) == PRUNE_AT and 0 < mean.current() < 1.5
    assert 0 <= hub.get_scalar('train/mtp_low_score_share').current() <= 1
    assert hub.get_scalar('train/flops_reduction').current() == \
        pytest.approx(1 - pruned / dense, abs=1e-6)
    assert trained_after_the_last_step(runner)


def test_checkpoints_before_and_after_the_search(trained):
    runner, work_dir = trained
    searching = torch.load(osp.join(work_dir, 'iter_4.pth'))['state_dict']
    scores = torch.cat([v for k, v in searching.items()
                        if k.startswith('gates.scores.')])
    # The tasks' gradients reached the gates (the runner replaced the
    # SyncBN layers they were made on); the L1 term alone would move every
    # score alike.
    assert scores.std() > 1e-4
    # After the pruning step the run saves the plain pruned segmentor, which
    # the written config rebuilds exactly.
    state = torch.load(osp.join(work_dir, 'iter_7.pth'))['state_dict']
    assert not any(k.startswith(('gates.', 'segmentor.')) for k in state)
    cfg = load_config(osp.join(work_dir, 'pruned_config.py'))
    rebuilt = build_segmentor(cfg, osp.join(work_dir, 'iter_7.pth'))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt._forward(x), runner.model.segmentor.eval()._forward(x))


def test_resume_after_the_search(trained, demo_root, tmp_path):
    _, work_dir = trained
    cfg = _config(tmp_path, demo_root, max_iters=8)
    cfg.resume = True
    cfg.load_from = osp.join(work_dir, 'iter_6.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 8
    assert not runner.model.searching
    assert _recorder(runner).losses == [['aux.loss_ce', 'decode.loss_ce']] * 2


def _pruner(runner):
    return next(h for h in runner.hooks if isinstance(h, PruningHook))


def test_resume_during_the_search(trained, demo_root, tmp_path):
    uninterrupted, work_dir = trained
    cls_root = uninterrupted.cfg.custom_hooks[0]['cls_dataloader'][
        'dataset']['data_root']
    cfg = _config(tmp_path, demo_root, max_iters=7, cls_root=cls_root)
    cfg.resume = True
    cfg.load_from = osp.join(work_dir, 'iter_4.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    # The search went on from its scores and cycle position, pruned at
    # the same iteration, and chose the same channels.
    seg = ['aux.loss_ce', 'decode.loss_ce', 'loss_sparsity']
    plain = ['aux.loss_ce', 'decode.loss_ce']
    assert _recorder(runner).losses == [seg, plain, plain]
    resumed, first = _pruner(runner).kept_indices, \
        _pruner(uninterrupted).kept_indices
    assert len(resumed) == len(first) == 1
    assert resumed[0].keys() == first[0].keys()
    for group in first[0]:
        assert torch.equal(resumed[0][group], first[0][group]), group


def test_label_free_search_in_training(demo_root, tmp_path):
    cfg = _config(tmp_path, demo_root, max_iters=3)
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if h['type'] != 'PruningHook']
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert _recorder(runner).losses[2] == ['loss_cls', 'loss_sparsity']
    assert runner.model.searching


def test_needs_the_weights_in_the_optimizer(demo_root, tmp_path):
    cfg = _config(tmp_path, demo_root, max_iters=1)
    cfg.optim_wrapper.pop('constructor')
    with pytest.raises(PruneError, match='MTPOptimWrapperConstructor'):
        Runner.from_cfg(cfg).train()


def test_needs_the_wrapper(demo_root, tmp_path):
    cfg = _config(tmp_path, demo_root, max_iters=1)
    cfg.model = cfg.model.segmentor
    cfg.custom_hooks = cfg.custom_hooks[:1]
    with pytest.raises(PruneError, match='MTPSegmentor'):
        Runner.from_cfg(cfg).train()
