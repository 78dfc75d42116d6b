"""Helpers the tests share: small configs, two-rank runs, group views."""
import copy
import importlib.util
import os.path as osp

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_prune.analysis import LayerCall, layer_calls
from mmseg_prune.apis import load_config
from mmseg_prune.testing import data_batch, fake_batch  # noqa: F401

DEEPLABV3 = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
#: A ViT-S with a linear head: attention holds most of its FLOPs.
SEGMENTER = 'mmseg::segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512.py'
#: A small segmentor with an auxiliary head, for fast tests.
SMALL = 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'
TESTS_DIR = osp.dirname(__file__)
#: The project's root, where tools/ and benchmarks/ live.
ROOT = osp.dirname(TESTS_DIR)


def load_script(folder, name):
    """A script of tools/ or benchmarks/ (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, folder, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_crop_config(config, size=64):
    """Load ``config`` with every crop, scale and pad shrunk to ``size``."""
    cfg = load_config(config)

    def shrink(node):
        if isinstance(node, dict):
            for key in ('crop_size', 'size'):
                if isinstance(node.get(key), (tuple, list)):
                    node[key] = (size, size)
            if node.get('type') in ('RandomResize', 'Resize') and \
                    'scale' in node:
                node['scale'] = (size * 2, size)
            for value in node.values():
                shrink(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                shrink(value)

    for key in ('model', 'train_dataloader', 'val_dataloader',
                'test_dataloader', 'train_pipeline', 'test_pipeline'):
        if key in cfg:
            shrink(cfg[key])
    cfg.crop_size = (size, size)
    return cfg


def small_segmenter_config(size=64, layers=2):
    """Segmenter's ViT-S (6 heads of 64) with ``layers`` layers at
    ``size`` x ``size``, without pretrained weights."""
    cfg = small_crop_config(SEGMENTER, size)
    cfg.model.pretrained = None
    cfg.model.backbone.update(img_size=(size, size), num_layers=layers,
                              init_cfg=None)
    return cfg


def small_voc_config(demo_root, size=64):
    """FCN R18 (with an aux head) for the generated VOC data at ``size``."""
    from mmseg_prune.apis import set_data_root
    from mmseg_prune.models import strip_pretrained
    cfg = small_crop_config(DEEPLABV3, size=size)
    cfg.model = strip_pretrained(small_crop_config(SMALL, size=size).model)
    cfg.model.decode_head.num_classes = 21
    cfg.model.auxiliary_head.num_classes = 21
    set_data_root(cfg, demo_root)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 2
    return cfg


#: Seconds two ranks may take before run_on_two_ranks stops them.
RANKS_TIMEOUT_S = 600


def run_on_two_ranks(fn, out_dir, *args):
    """Run ``fn(rank, *args)`` in two spawned processes joined by a gloo
    group on the CPU; return what each rank's call returned.

    ``fn`` must be a module-level function (it is pickled). Spawned, not
    forked: a fork copies locks that the test process's threads (OpenMP,
    progress bars) may hold, and a child that waits on one hangs forever.
    ``out_dir`` holds the group's rendezvous file and the results.
    """
    import time

    import torch.multiprocessing as mp
    context = mp.start_processes(_rank_worker, args=(fn, str(out_dir), args),
                                 nprocs=2, join=False, start_method='spawn')
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f'two ranks ran past {RANKS_TIMEOUT_S} s')
    return [torch.load(osp.join(str(out_dir), f'rank{rank}.pth'))
            for rank in range(2)]


def _rank_worker(rank, fn, out_dir, args):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{osp.join(out_dir, "init")}',
        rank=rank, world_size=2)
    try:
        torch.save(fn(rank, *args), osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def producers(group):
    """Names of the modules whose output channels ``group`` removes."""
    return [m.name for m in group.members if m.dim == 'out']


@HOOKS.register_module()
class PruneProbe(Hook):
    """Looks at the run right after each pruning step: the live weights,
    their FLOPs (counted independently of the hook), and whether the
    optimizer holds every parameter of the model."""

    priority = 'LOW'  # after PruningHook (VERY_HIGH) has pruned

    def __init__(self):
        self.weights, self.optimized, self.flops = {}, {}, {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        from mmseg_prune.hooks import PruningHook
        from mmseg_prune.models import trained_segmentor
        pruner = next((h for h in runner.hooks if isinstance(h, PruningHook)),
                      None)
        step = pruner.steps_done if pruner is not None else 0
        if step and step not in self.weights:
            model = trained_segmentor(runner.model)
            self.weights[step] = {k: v.detach().clone()
                                  for k, v in model.named_parameters()}
            optimized = {id(p) for group in
                         runner.optim_wrapper.optimizer.param_groups
                         for p in group['params']}
            self.optimized[step] = all(
                id(p) in optimized for p in model.parameters())
            from mmseg_prune.analysis import count_complexity
            self.flops[step] = count_complexity(
                copy.deepcopy(model).cpu().eval(), pruner.input_shape).flops


def trained_after_the_last_step(runner) -> bool:
    """Whether some parameter of ``runner``'s model changed after its last
    pruning step (the probe's last snapshot); BN running statistics, which
    change without training, do not count."""
    from mmseg_prune.models import trained_segmentor
    probe = next(h for h in runner.hooks if isinstance(h, PruneProbe))
    snapshot = probe.weights[max(probe.weights)]
    final = dict(trained_segmentor(runner.model).named_parameters())
    assert final.keys() == snapshot.keys()
    assert all(final[k].shape == v.shape for k, v in snapshot.items())
    return any(not torch.equal(final[k].detach().cpu(), v.cpu())
               for k, v in snapshot.items())


#: What a model takes beside its conv and linear layers, in fake ms.
OVERHEAD_MS = 400.0


def fake_ms(call, cin, cout):
    """Milliseconds of one layer call: its multiply-adds / 1e6."""
    if call.kind == 'linear':
        return call.spec[0] * cin * cout / 1e6
    (kh, kw), (sh, sw), _, _, groups, depthwise, (h, w) = call.spec
    per_group = 1 if depthwise else cin / groups
    return kh * kw * per_group * cout * (h // sh) * (w // sw) / 1e6


def conv_call(cin, cout, size):
    """A 3x3 conv's call on a ``size`` input."""
    return LayerCall('conv', ((3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                              size), cin, cout, True)


def fake_model_ms(model, input_shape=(64, 64)):
    """Milliseconds of a model by :func:`fake_ms`, plus an overhead."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    calls = layer_calls(model, input_shape, names)
    return OVERHEAD_MS + sum(fake_ms(c, c.in_channels, c.out_channels)
                             for found in calls.values() for c in found)


class FakeTimer:
    """LatencyTimer's interface, timing by :func:`fake_model_ms`."""

    def __init__(self, model, input_shape, runs=None):
        self.device = torch.device('cpu')
        self.input_shape = input_shape
        self.dense_ms = fake_model_ms(model, input_shape)

    def compare(self, candidate):
        pruned = fake_model_ms(candidate, self.input_shape)
        return dict(dense_ms=self.dense_ms, pruned_ms=pruned,
                    dense_spread=0.0, pruned_spread=0.0,
                    reduction=1 - pruned / self.dense_ms)
