"""How much mIoU each criterion keeps at a FLOPs budget, on a trained model.

The proxy study of docs/criteria.md, on data anyone can regenerate on a
2-core CPU:

1. data: generated VOC-layout scenes (train and val) and a generated
   classification set (tools/make_demo_data.py's generators);
2. classification pre-training of the ResNetV1c-18 backbone (the papers'
   ImageNet pre-training; MTP's classification branch uses its classifier);
3. segmentation training of each dense model through MMEngine's runner;
4. every criterion at every FLOPs reduction and seed: prune the dense model,
   evaluate val mIoU at once (zero-shot), fine-tune for a fixed number of
   iterations with the same schedule for all, evaluate again; for some
   criteria also fine-tune with logit distillation from the dense model;
5. docs/criteria.json (one record per run), docs/criteria.md (tables) and
   docs/criteria.png (plots), each naming the command that made it.

Every stage caches its outputs under --work-dir and a rerun resumes where the
last one stopped; each finished run is appended to runs.jsonl at once, so a
killed study loses at most the run in progress.

Training and fine-tuning run in float32 by default. ``--precision bf16``
trains under bfloat16 autocast (BF16OptimWrapper; weights and optimizer
stay float32): a step is 1.7x faster on this project's CPU, a whole run
about 1.4x (evaluation and runner set-up do not shrink), and its dense
models came out 3 to 6 mIoU lower (docs/criteria.md). Pruning statistics
and evaluation are float32 either way. The wall time over every run of the
script on a work dir is kept in its timing.json.

Example:
    python benchmarks/criteria.py --quick         # one seed, 0.5, short,
                                                  # no ablations or KD
    python benchmarks/criteria.py                 # the full study
    python benchmarks/criteria.py --criteria sirfp-schedule  # and more
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time
import warnings

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    'deeplabv3_r18': 'configs/proxy/deeplabv3_r18-d8_proxy-128x128.py',
    'pspnet_r18': 'configs/proxy/pspnet_r18-d8_proxy-128x128.py',
}


#: Run at every reduction and seed, on both models, by default.
MAIN_CRITERIA = ['random', 'l1', 'bn_scale', 'fpgm', 'taylor', 'sirfp',
                 'sirfp-grad', 'mtp', 'mtp-label-free']
#: SIRFP's departures from its official defaults, at reduction 0.5 on the
#: first model, by default.
ABLATIONS = ['sirfp-grad-unscaled', 'sirfp-no-bias-comp', 'sirfp-eval-calib']
QUICK_CRITERIA = [c for c in MAIN_CRITERIA if c != 'sirfp-grad']


def log(message):
    print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


# --------------------------------------------------------------------------
# Stage 1: data
# --------------------------------------------------------------------------
def make_data(args):
    """Generate the segmentation and classification sets once."""
    from mmseg_prune.datasets import (make_demo_classification,
                                      make_demo_dataset)
    from mmseg_prune.datasets.demo import MARKER
    seg_root = osp.join(args.work_dir, 'data', 'seg')
    cls_root = osp.join(args.work_dir, 'data', 'cls')
    size = (args.size * 3 // 4, args.size * 5 // 4)
    if not osp.isfile(osp.join(seg_root, MARKER)):
        log(f'generating {args.num_images} segmentation scenes')
        make_demo_dataset(seg_root, args.num_images, seed=0, size=size)
    if not osp.isfile(osp.join(cls_root, MARKER)):
        log(f'generating {args.num_cls_images} classification scenes')
        make_demo_classification(cls_root, args.num_cls_images, seed=0,
                                 size=size)
    return seg_root, cls_root


# --------------------------------------------------------------------------
# Stage 2: classification pre-training of the backbone
# --------------------------------------------------------------------------
def _load_classification(root, size):
    import cv2
    classes = sorted(d for d in os.listdir(root)
                     if osp.isdir(osp.join(root, d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(os.listdir(osp.join(root, name))):
            image = cv2.imread(osp.join(root, name, file))[..., ::-1]
            images.append(cv2.resize(image, (size, size)))
            labels.append(label)
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return images.contiguous(), torch.tensor(labels), classes


def pretrain(args, cls_root, cfg):
    """Train the config's backbone (at stride 32, as on ImageNet) plus a
    linear classifier; save them in mmpretrain's key layout."""
    path = osp.join(args.work_dir, 'pretrain.pth')
    if osp.isfile(path):
        return path
    from mmseg.registry import MODELS as SEG_MODELS

    from mmseg_prune.utils.io import atomic_torch_save
    torch.manual_seed(0)
    images, labels, classes = _load_classification(cls_root, args.size)
    num_val = len(images) // 10
    order = torch.randperm(len(images))
    val_idx, train_idx = order[:num_val], order[num_val:]
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.update(strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                        init_cfg=None, pretrained=None)
    backbone = SEG_MODELS.build(backbone_cfg)
    backbone.eval()  # mmseg's ResNet.train() returns None: no chaining
    with torch.no_grad():
        width = backbone(torch.zeros(1, 3, 32, 32))[-1].shape[1]
    head = torch.nn.Linear(width, len(classes))
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)

    def logits(batch):
        return head(backbone((batch.float() - mean) / std)[-1].mean((2, 3)))

    params = list(backbone.parameters()) + list(head.parameters())
    steps_per_epoch = len(train_idx) // args.cls_batch
    total = steps_per_epoch * args.cls_epochs
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9,
                                weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=total, pct_start=0.15)
    log(f'pre-training the backbone on {len(train_idx)} images, '
        f'{len(classes)} classes, {args.cls_epochs} epochs')
    start = time.time()
    for epoch in range(args.cls_epochs):
        backbone.train()
        perm = train_idx[torch.randperm(len(train_idx))]
        for step in range(steps_per_epoch):
            idx = perm[step * args.cls_batch:(step + 1) * args.cls_batch]
            batch = images[idx]
            flip = torch.rand(len(idx)) < 0.5
            batch[flip] = batch[flip].flip(-1)
            with torch.autocast('cpu', dtype=torch.bfloat16,
                                enabled=args.precision == 'bf16'):
                scores = logits(batch)
            loss = torch.nn.functional.cross_entropy(scores.float(),
                                                     labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        backbone.eval()
        with torch.no_grad():
            correct = sum(
                (logits(images[val_idx[i:i + 64]]).argmax(1) ==
                 labels[val_idx[i:i + 64]]).sum().item()
                for i in range(0, num_val, 64))
        log(f'  epoch {epoch + 1}: loss {loss.item():.3f}, val top-1 '
            f'{100 * correct / num_val:.1f}%')
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state.update({f'head.fc.{k}': v for k, v in head.state_dict().items()})
    atomic_torch_save(dict(state_dict=state, meta=dict(
        classes=classes, val_top1=100 * correct / num_val,
        seconds=time.time() - start)), path)
    return path


# --------------------------------------------------------------------------
# Stage 3: dense segmentation training
# --------------------------------------------------------------------------
def study_config(model, seg_root, args):
    """The model's proxy config on the generated data at --size."""
    from mmseg_prune.apis import load_config
    cfg = load_config(osp.join(ROOT, MODELS[model]), data_root=seg_root)
    if args.precision == 'bf16':
        cfg.optim_wrapper.type = 'BF16OptimWrapper'
    if args.size != 128:
        crop = (args.size, args.size)
        cfg.merge_from_dict({'crop_size': crop,
                             'model.data_preprocessor.size': crop,
                             'pruning.input_shape': crop})
        for loader in (cfg.train_dataloader, cfg.val_dataloader,
                       cfg.test_dataloader):
            for step in loader.dataset.pipeline:
                if step['type'] in ('RandomResize', 'Resize'):
                    step['scale'] = (2 * args.size, args.size)
                if step['type'] == 'RandomCrop':
                    step['crop_size'] = crop
    return cfg


def train_dense(args, model, cfg, pretrained):
    """Train the dense segmentor; cache its checkpoint and val mIoU."""
    from mmengine.runner import Runner

    from mmseg_prune.apis.runner import _runner_config
    out = osp.join(args.work_dir, model)
    done = osp.join(out, 'dense.json')
    if osp.isfile(done):
        with open(done) as f:
            return json.load(f)
    cfg = _runner_config(cfg, osp.join(out, 'train'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                       checkpoint=pretrained,
                                       prefix='backbone.')
    iters = args.dense_iters
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters)
    cfg.param_scheduler[0]['end'] = iters
    cfg.randomness = dict(seed=0)
    # A stopped study goes on from the last checkpoint (every 500 iters).
    cfg.resume = True
    log(f'training dense {model} for {iters} iterations')
    start, cpu_start = time.time(), time.process_time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    seconds = time.time() - start
    cpu_seconds = time.process_time() - cpu_start
    metrics = runner.val_loop.run()
    record = dict(checkpoint=osp.join(out, 'train', f'iter_{iters}.pth'),
                  miou=float(metrics['mIoU']), train_seconds=seconds,
                  train_cpu_seconds=cpu_seconds,
                  threads=torch.get_num_threads(), iters=iters,
                  precision=args.precision)
    from mmseg_prune.utils.io import atomic_write_text
    atomic_write_text(done, json.dumps(record, indent=2))
    log(f'dense {model}: val mIoU {record["miou"]:.2f} after '
        f'{seconds / 60:.1f} min')
    return record


def dense_finetuned(args, model, cfg, dense):
    """The dense model after the study's fine-tuning schedule (seed 0):
    what a pruned model that recovers fully would reach, since the
    fine-tune also trains on. Cached in ``dense.json``."""
    key = f'miou_finetuned_{args.finetune_iters}'
    if key in dense:
        return dense
    dense_cfg = _quiet(copy.deepcopy(cfg))
    dense_cfg.load_from = osp.abspath(dense['checkpoint'])
    miou = _finetune_and_evaluate(
        args, cfg, dense, dense_cfg,
        osp.join(args.work_dir, model, 'dense_finetuned'), 0, False)
    dense = dict(dense, **{key: float(miou)})
    from mmseg_prune.utils.io import atomic_write_text
    atomic_write_text(osp.join(args.work_dir, model, 'dense.json'),
                      json.dumps(dense, indent=2))
    log(f'dense {model} after the same {args.finetune_iters}-iteration '
        f'fine-tune: val mIoU {miou:.2f}')
    return dense


# --------------------------------------------------------------------------
# Stage 4: prune, evaluate, fine-tune, evaluate
# --------------------------------------------------------------------------
def criteria_specs(pretrained, cls_root, args):
    """Study name -> criterion config, calibration batches and options."""
    cls_loader = dict(
        batch_size=16, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(type='ImageFolderDataset', data_root=cls_root,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='Resize',
                                    scale=(args.size, args.size)),
                               dict(type='PackClsInputs')]))
    mtp = dict(type='MTPCriterion', sparsity=args.mtp_sparsity,
               optimizer=dict(type='Adam', lr=0.01),
               classifier=dict(num_classes=20, checkpoint=pretrained),
               ignore=['auxiliary_head.*'])
    search = args.mtp_steps
    return {
        # Random channels differ from seed to seed.
        'random': dict(criterion=dict(type='random'), seeded=True),
        'l1': dict(criterion='l1'),
        'bn_scale': dict(criterion='bn_scale'),
        'fpgm': dict(criterion='fpgm'),
        'taylor': dict(criterion='taylor'),
        'sirfp': dict(criterion='sirfp'),
        # Ablations of SIRFP's official defaults, zero-shot only.
        'sirfp-no-bias-comp': dict(criterion='sirfp',
                                   bias_compensation=False, finetune=False),
        'sirfp-eval-calib': dict(
            criterion=dict(type='sirfp', calibration_mode='eval'),
            finetune=False),
        'sirfp-grad': dict(criterion=dict(type='sirfp', gradient_weight=0.4)),
        'sirfp-grad-unscaled': dict(criterion=dict(
            type='sirfp', gradient_weight=0.4, gradient_scale=1)),
        # The baselines under SIRFP's official budget (backbone and head cut
        # at one quantile of raw scores): criterion and allocation apart.
        'l1-split': dict(criterion='l1', budget=dict(mode='split',
                                                     normalizer=None)),
        'taylor-split': dict(criterion='taylor',
                             budget=dict(mode='split', normalizer=None)),
        # Channel counts in multiples of 16 (oneDNN's fp32 block on
        # AVX-512 CPUs; benchmarks/alignment.py): what the alignment costs.
        'l1-round16': dict(criterion='l1', budget=dict(round_to=16)),
        'sirfp-round16': dict(criterion='sirfp', budget=dict(round_to=16)),
        'mtp': dict(criterion=dict(mtp, cls_dataloader=cls_loader),
                    batches=search),
        'mtp-label-free': dict(criterion=mtp, batches=search),
        # SIRFP's in-training schedule (PruningHook), as its authors' COCO
        # recipe: statistics from training iterations, half the reduction
        # with the edge score, all of it with the gradient variant, then
        # the same fine-tune as every criterion. Statistics momentum 0.9
        # (official 0.999 over 6k iterations) for --schedule-iters.
        'sirfp-schedule': dict(schedule=[
            dict(criterion=dict(type='sirfp', momentum=0.9)),
            dict(criterion=dict(type='sirfp', momentum=0.9,
                                gradient_weight=0.4))]),
    }


def _quiet(cfg):
    cfg.log_level = 'WARNING'
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**6,
                                    log_metric_by_epoch=False)
    return cfg


def prune_and_tune(args, model, cfg, dense, name, spec, ratio, seed,
                   done, results):
    """One pruned model, evaluated zero-shot, then fine-tuned (plain and,
    where asked, distilled) and evaluated again; records go to
    ``results`` (a JSONL file) as soon as they exist."""
    from mmengine.runner import set_random_seed

    from mmseg_prune.apis import (build_criterion, build_report,
                                  build_segmentor, load_config,
                                  prune_segmentor, save_pruned)
    from mmseg_prune.apis.runner import CalibrationBatches, evaluate
    from mmseg_prune.utils.cli import quiet_logger
    variants = [d for d in args.distill_variants(model, name, ratio)
                if (model, name, ratio, seed, d) not in done]
    if not variants:
        return
    if 'schedule' in spec:
        return schedule_and_tune(args, model, cfg, dense, name, spec, ratio,
                                 seed, done, results)
    run_dir = osp.join(args.work_dir, model, name, f'{ratio}', f'{seed}')
    # CPU time is not inflated by other load or a paused process: per
    # thread, it is what the run takes on a quiet machine. The pruning and
    # zero-shot evaluation count towards the first record.
    start, cpu_start = time.time(), time.process_time()
    set_random_seed(seed)
    pruning = cfg.pruning
    criterion = build_criterion(
        dict(spec['criterion'], seed=seed) if spec.get('seeded')
        else spec['criterion'])
    batches = CalibrationBatches(
        cfg, spec.get('batches', pruning.calibration_batches), seed=seed) \
        if criterion.requires_data else None
    with quiet_logger():
        result = prune_segmentor(
            build_segmentor(cfg, dense['checkpoint']), criterion, ratio,
            pruning.input_shape, batches=batches, ignore=pruning.ignore,
            budget={**pruning.budget, **spec.get('budget', {})},
            bias_compensation=spec.get('bias_compensation'))
        report = build_report(result, name, ratio)
        paths = save_pruned(result, cfg, run_dir, report)
    prune_seconds = time.time() - start
    pruned_cfg = _quiet(load_config(paths['config']))
    miou_pruned = evaluate(pruned_cfg, osp.join(run_dir, 'eval'))['mIoU']
    for distill in variants:
        start = time.time()
        miou = None
        if spec.get('finetune', True):
            miou = _finetune_and_evaluate(args, cfg, dense, pruned_cfg,
                                          run_dir, seed, distill)
        record = dict(
            model=model, criterion=name, flops_reduction=ratio, seed=seed,
            distill=distill, miou_dense=round(dense['miou'], 2),
            miou_pruned=round(float(miou_pruned), 2),
            miou_finetuned=None if miou is None else round(float(miou), 2),
            achieved_reduction=round(result.achieved_reduction, 4),
            params_ratio=round(result.pruned.params / result.dense.params,
                               4),
            finetune_iters=args.finetune_iters if miou is not None else 0,
            prune_seconds=round(prune_seconds, 1),
            finetune_seconds=round(time.time() - start, 1),
            cpu_seconds=round(time.process_time() - cpu_start, 1),
            threads=torch.get_num_threads(), precision=args.precision,
            layers=osp.relpath(paths['report'], args.work_dir))
        with open(results, 'a') as f:
            f.write(json.dumps(record) + '\n')
        cpu_start = time.process_time()
        done.add((model, name, ratio, seed, distill))
        log(f'{model} {name} {ratio} seed {seed}'
            f'{" distilled" if distill else ""}: mIoU dense '
            f'{dense["miou"]:.2f}, pruned {miou_pruned:.2f}, fine-tuned '
            f'{"-" if miou is None else f"{miou:.2f}"}')


def schedule_and_tune(args, model, cfg, dense, name, spec, ratio, seed,
                      done, results):
    """Prune during one training run from the dense checkpoint: a step
    every --schedule-iters iterations to ``ratio`` times (k+1)/steps, then
    the study's --finetune-iters iterations; the val mIoU after it. There
    is no zero-shot figure: the model trains between the steps."""
    from mmseg_prune.analysis import count_complexity
    from mmseg_prune.apis import build_segmentor, load_config
    from mmseg_prune.apis.runner import evaluate, finetune
    run_dir = osp.join(args.work_dir, model, name, f'{ratio}', f'{seed}')
    start, cpu_start = time.time(), time.process_time()
    steps = spec['schedule']
    run_cfg = _quiet(copy.deepcopy(cfg))
    run_cfg.load_from = osp.abspath(dense['checkpoint'])
    run_cfg.randomness = dict(seed=seed)
    run_cfg.val_dataloader = run_cfg.val_cfg = None
    run_cfg.val_evaluator = None
    pruning = run_cfg.pop('pruning')
    run_cfg.custom_hooks = [dict(
        type='PruningHook', input_shape=pruning.input_shape,
        ignore=pruning.ignore, budget=pruning.budget,
        schedule=[dict(step, iter=(k + 1) * args.schedule_iters,
                       flops_reduction=round(ratio * (k + 1) / len(steps),
                                             4))
                  for k, step in enumerate(steps)])]
    iters = len(steps) * args.schedule_iters + args.finetune_iters
    work_dir = osp.join(run_dir, 'schedule')
    checkpoint = finetune(run_cfg, work_dir, iters)
    pruned_cfg = _quiet(load_config(osp.join(work_dir, 'pruned_config.py')))
    miou = evaluate(pruned_cfg, osp.join(run_dir, 'eval_schedule'),
                    checkpoint)['mIoU']
    dense_size = count_complexity(build_segmentor(cfg).eval(),
                                  pruning.input_shape)
    pruned_size = count_complexity(build_segmentor(pruned_cfg).eval(),
                                   pruning.input_shape)
    record = dict(
        model=model, criterion=name, flops_reduction=ratio, seed=seed,
        distill=False, miou_dense=round(dense['miou'], 2), miou_pruned=None,
        miou_finetuned=round(float(miou), 2),
        achieved_reduction=round(1 - pruned_size.flops / dense_size.flops,
                                 4),
        params_ratio=round(pruned_size.params / dense_size.params, 4),
        finetune_iters=iters, prune_seconds=0.0,
        finetune_seconds=round(time.time() - start, 1),
        cpu_seconds=round(time.process_time() - cpu_start, 1),
        threads=torch.get_num_threads(), precision=args.precision,
        layers=None)
    with open(results, 'a') as f:
        f.write(json.dumps(record) + '\n')
    done.add((model, name, ratio, seed, False))
    log(f'{model} {name} {ratio} seed {seed}: mIoU dense {dense["miou"]:.2f}'
        f', pruned in training and fine-tuned {miou:.2f}')


def _finetune_and_evaluate(args, cfg, dense, pruned_cfg, run_dir, seed,
                           distill):
    """Fine-tune with the study's fixed schedule; the val mIoU after it.

    ``pruned_cfg`` holds its weights (a pruned config's own, or
    ``load_from``); ``cfg`` and ``dense`` give the distillation teacher.
    """
    from mmseg_prune.apis import dense_architecture
    from mmseg_prune.apis.runner import evaluate, finetune
    tune_cfg = copy.deepcopy(pruned_cfg)
    tune_cfg.randomness = dict(seed=seed)
    # Evaluated below, once.
    tune_cfg.val_dataloader = tune_cfg.val_cfg = None
    tune_cfg.val_evaluator = None
    teacher = dict(teacher=dense_architecture(cfg),
                   checkpoint=osp.abspath(dense['checkpoint'])) \
        if distill else None
    tag = 'distill' if distill else 'plain'
    checkpoint = finetune(tune_cfg, osp.join(run_dir, tag),
                          args.finetune_iters, teacher)
    return evaluate(pruned_cfg, osp.join(run_dir, 'eval_' + tag),
                    checkpoint)['mIoU']


def read_results(path):
    records = []
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill
                    pass
    return records


def check_cache(args):
    """Refuse a work dir whose cache was made in another precision; an
    error message (None when the cache fits)."""
    from mmseg_prune.utils.io import atomic_write_text
    path = osp.join(args.work_dir, 'settings.json')
    if osp.isfile(path):
        with open(path) as f:
            cached = json.load(f)
    else:
        # A cache made before --precision existed was trained in fp32.
        made_before = osp.isfile(osp.join(args.work_dir, 'pretrain.pth'))
        cached = dict(precision='fp32' if made_before else args.precision)
        os.makedirs(args.work_dir, exist_ok=True)
        atomic_write_text(path, json.dumps(cached, indent=2))
    if cached['precision'] != args.precision:
        return (f'{args.work_dir} holds a study trained in '
                f'{cached["precision"]}; pass --precision '
                f'{cached["precision"]} to go on with it, or a new '
                '--work-dir')
    return None


class StudyClock:
    """Wall time spent on a work dir over every run of the script, so that
    a study stopped and resumed still states its whole time.

    Each run of the script is one segment in ``timing.json``; its seconds
    are saved at every :meth:`tick`, so a killed run loses at most the time
    since its last tick (the run in progress, which the next one redoes).
    """

    def __init__(self, work_dir):
        from mmseg_prune.utils.io import atomic_write_text
        self._write = atomic_write_text
        self.path = osp.join(work_dir, 'timing.json')
        self.segments = []
        if osp.isfile(self.path):
            with open(self.path) as f:
                self.segments = json.load(f)['segments']
        self.start = time.time()
        self.segments.append(dict(
            started=time.strftime('%Y-%m-%d %H:%M:%S'), seconds=0.0))
        self.tick()

    def tick(self):
        self.segments[-1]['seconds'] = round(time.time() - self.start, 1)
        self._write(self.path, json.dumps(dict(segments=self.segments),
                                          indent=1))

    @property
    def total(self):
        return sum(s['seconds'] for s in self.segments)


# --------------------------------------------------------------------------
# Stage 5: tables and plots
# --------------------------------------------------------------------------
def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else 0.0)


def _cell(values):
    if not values:
        return '–'
    mean, std = _mean_std(values)
    return f'{mean:.1f} ± {std:.1f}' if len(values) > 1 else f'{mean:.1f}'


def summarise(records):
    """(model, criterion, ratio, distill) -> lists of the run figures."""
    table = {}
    for r in records:
        key = (r['model'], r['criterion'], r['flops_reduction'],
               r['distill'])
        entry = table.setdefault(key, dict(pruned=[], finetuned=[],
                                           dense=r['miou_dense'],
                                           achieved=[]))
        if r['miou_pruned'] is not None:  # none for in-training pruning
            entry['pruned'].append(r['miou_pruned'])
        if r['miou_finetuned'] is not None:
            entry['finetuned'].append(r['miou_finetuned'])
        entry['achieved'].append(r['achieved_reduction'])
    return table


NOTES = '<!-- notes: kept when the study rewrites this file -->'


def _compute_line(dense, records, model):
    """The compute time recorded as CPU seconds per thread, which
    neither other load nor a paused run inflates."""
    timed = [r for r in records
             if r['model'] == model and r.get('cpu_seconds') is not None]
    parts = []
    if dense.get('train_cpu_seconds') is not None:
        minutes = dense['train_cpu_seconds'] / dense['threads'] / 60
        parts.append(f'dense training {minutes:.0f} min')
    if timed:
        minutes = sum(r['cpu_seconds'] / r['threads'] for r in timed) / 60
        parts.append(f'the {len(timed)} runs that record it {minutes:.0f} '
                     f'min ({minutes * 60 / len(timed):.0f} s a run)')
    if not parts:
        return ''
    return (' Compute, as CPU seconds per thread (what a quiet machine '
            'takes): ' + '; '.join(parts) + '.')


def _time_line(clock):
    """The study's wall time on its work dir, over every run of the
    script."""
    clock.tick()
    text = f'Wall time on this work dir: {clock.total / 60:.0f} min'
    if len(clock.segments) > 1:
        text += (f' over {len(clock.segments)} runs of the script (a '
                 'stopped study resumes; the time a stop cut short is not '
                 'counted)')
    return text + '.'


def write_markdown(path, records, command, dense, clock):
    """Tables of every (model, criterion, reduction); what follows the
    :data:`NOTES` line of an existing file (the analysis) is kept."""
    notes = ''
    if osp.isfile(path):
        text = open(path).read()
        if NOTES in text:
            notes = text[text.index(NOTES):]
    table = summarise(records)
    models = sorted({k[0] for k in table})
    lines = ['# Criteria on a trained model (proxy study)', '',
             f'Made by `{command}`. ' + _time_line(clock), '']
    for model in models:
        info = dense[model]
        tuned = {k: v for k, v in info.items()
                 if k.startswith('miou_finetuned_')}
        lines += [f'## {model}', '',
                  f'Dense val mIoU {info["miou"]:.2f} after '
                  f'{info["iters"]} iterations '
                  f'({info["train_seconds"] / 60:.0f} min on this machine)'
                  + ''.join(f'; {v:.2f} after the same '
                            f'{k.rsplit("_", 1)[1]}-iteration fine-tune '
                            'as the pruned models' for k, v in tuned.items())
                  + '.' + _compute_line(info, records, model), '',
                  '| criterion | FLOPs reduction | mIoU zero-shot | '
                  'mIoU fine-tuned | mIoU fine-tuned, distilled | runs |',
                  '|---|---|---|---|---|---|']
        for (m, crit, ratio, distill), e in sorted(table.items()):
            if m != model or distill:
                continue
            kd = table.get((m, crit, ratio, True))
            lines.append(
                f'| {crit} | {ratio:.1f} (got {np.mean(e["achieved"]):.3f})'
                f' | {_cell(e["pruned"])} | {_cell(e["finetuned"])} | '
                f'{_cell(kd["finetuned"]) if kd else ""} | '
                f'{len(e["finetuned"]) or len(e["pruned"])} |')
        lines.append('')
    from mmseg_prune.utils.io import atomic_write_text
    atomic_write_text(path, '\n'.join(lines) + '\n' + notes)


def write_plot(path, records, work_dir, command, model, dense_info=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mmseg_prune.analysis.plots import plot_kept_share
    table = summarise(r for r in records if r['model'] == model)
    criteria = sorted({k[1] for k in table})
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.5))
    # One colour and marker per criterion, over more criteria than the
    # default ten colours.
    colours = plt.get_cmap('tab20').colors
    styles = {crit: dict(color=colours[i % 20], marker='osD^v<>ph*'[i % 10])
              for i, crit in enumerate(criteria)}
    for ax, which, title in ((axes[0], 'pruned', 'zero-shot'),
                             (axes[1], 'finetuned', 'fine-tuned')):
        for crit in criteria:
            points = sorted((k[2], _mean_std(e[which]))
                            for k, e in table.items()
                            if k[1] == crit and not k[3] and e[which])
            if not points:
                continue
            ax.errorbar([p[0] for p in points], [p[1][0] for p in points],
                        yerr=[p[1][1] for p in points], capsize=3,
                        label=crit, **styles[crit])
        dense = next(iter(table.values()))['dense']
        ax.axhline(dense, color='k', linestyle='--', label='dense')
        tuned = [v for k, v in (dense_info or {}).items()
                 if k.startswith('miou_finetuned_')]
        if which == 'finetuned' and tuned:
            ax.axhline(tuned[0], color='k', linestyle=':',
                       label='dense, fine-tuned alike')
        ax.set_xlabel('FLOPs reduction')
        ax.set_ylabel('val mIoU')
        ax.set_title(f'{model}: {title}')
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    for crit in ('sirfp', 'l1'):
        run = next((r for r in records if r['model'] == model and
                    r['criterion'] == crit and r['flops_reduction'] == 0.5),
                   None)
        if run:
            with open(osp.join(work_dir, run['layers'])) as f:
                plot_kept_share(axes[2], json.load(f)['layers'], crit)
    axes[2].set_title(f'{model} at 0.5: kept share per layer')
    axes[2].legend()
    fig.suptitle(command, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', help='cache (default: '
                        'work_dirs/criteria, work_dirs/criteria_quick)')
    parser.add_argument('--out', help='prefix of the .md/.json/.png '
                        'written (default: docs/criteria; --quick: in the '
                        'work dir)')
    parser.add_argument('--quick', action='store_true',
                        help='one seed, reduction 0.5, fewer iterations; '
                        'the methods and baselines, no ablations or KD')
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--num-images', type=int, default=680)
    parser.add_argument('--num-cls-images', type=int, default=3000)
    parser.add_argument('--cls-epochs', type=int, default=10)
    parser.add_argument('--cls-batch', type=int, default=32)
    parser.add_argument('--dense-iters', type=int, default=2000)
    parser.add_argument('--finetune-iters', type=int, default=100)
    parser.add_argument('--mtp-steps', type=int, default=100)
    parser.add_argument('--schedule-iters', type=int, default=10,
                        help='training iterations before each pruning step '
                        'of sirfp-schedule')
    parser.add_argument('--mtp-sparsity', type=float, default=1e-3)
    parser.add_argument('--reductions', type=float, nargs='+',
                        default=[0.3, 0.5, 0.7])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--criteria', nargs='+', help='study names to run, '
                        'each at every reduction (default: the main '
                        'criteria, and SIRFP\'s ablations at 0.5; the '
                        'in-training schedule, split budgets and round_to '
                        'variants only when named)')
    parser.add_argument('--precision', choices=['bf16', 'fp32'],
                        default='fp32', help='training and fine-tuning '
                        'precision: fp32, or bf16 autocast '
                        '(BF16OptimWrapper: faster on a CPU with bf16 '
                        'units, lower dense mIoU here); pruning and '
                        'evaluation are fp32 either way')
    parser.add_argument('--second-model',
                        help='run at 0.5 only; "none" to skip (default: '
                        'pspnet_r18; --quick: none)')
    parser.add_argument('--stage', choices=['dense', 'all'], default='all')
    args = parser.parse_args(argv)
    args.second_model = args.second_model or (
        'none' if args.quick else 'pspnet_r18')
    if args.quick:
        # The methods and the baselines, without ablations or distillation.
        args.criteria = args.criteria or QUICK_CRITERIA
        args.reductions, args.seeds = [0.5], [0]
        args.num_cls_images = min(args.num_cls_images, 1000)
        args.cls_epochs = min(args.cls_epochs, 3)
        args.dense_iters = min(args.dense_iters, 300)
        args.finetune_iters = min(args.finetune_iters, 30)
        args.mtp_steps = min(args.mtp_steps, 30)
    args.work_dir = args.work_dir or ('work_dirs/criteria_quick'
                                      if args.quick else 'work_dirs/criteria')
    args.out = args.out or (osp.join(args.work_dir, 'criteria')
                            if args.quick else 'docs/criteria')
    distilled = {'sirfp', 'mtp', 'l1'}

    def distill_variants(model, name, ratio):
        return [False, True] if name in distilled and ratio >= 0.5 \
            and model == 'deeplabv3_r18' and not args.quick else [False]

    args.distill_variants = distill_variants
    return args


def planned_runs(args, names, models):
    """(model, reduction, name) in the order the study runs them: the main
    criteria everywhere, ablations at 0.5 on the first model only unless
    named with --criteria, the second model at 0.5 only."""
    plan = []
    for model in models:
        reductions = args.reductions if model == models[0] else [0.5]
        for ratio in reductions:
            for name in names:
                if name in ABLATIONS and not args.criteria and (
                        model != models[0] or ratio != 0.5):
                    continue
                plan.append((model, ratio, name))
    return plan


def main(argv=None):
    command = 'python benchmarks/criteria.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.chdir(ROOT)
    names = args.criteria or MAIN_CRITERIA + ABLATIONS
    known = list(criteria_specs('', '', args))
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f'error: unknown criteria {unknown}; choose from '
              f'{", ".join(known)}', file=sys.stderr)
        return 2
    problem = check_cache(args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    clock = StudyClock(args.work_dir)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    warnings.filterwarnings('ignore')
    import mmseg_prune  # noqa: F401 - registers the plugin
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    seg_root, cls_root = make_data(args)
    models = ['deeplabv3_r18']
    if args.second_model != 'none':
        models.append(args.second_model)
    cfgs = {m: study_config(m, seg_root, args) for m in models}
    pretrained = pretrain(args, cls_root, cfgs[models[0]])
    clock.tick()
    dense = {}
    for model in models:
        dense[model] = train_dense(args, model, cfgs[model], pretrained)
        clock.tick()
    if args.stage == 'dense':
        return 0
    for model in models:
        dense[model] = dense_finetuned(args, model, cfgs[model],
                                       dense[model])
        clock.tick()
    specs = criteria_specs(pretrained, cls_root, args)
    results = osp.join(args.work_dir, 'runs.jsonl')
    done = {(r['model'], r['criterion'], r['flops_reduction'], r['seed'],
             r['distill']) for r in read_results(results)}
    plan = planned_runs(args, names, models)
    for seed in args.seeds:
        for model, ratio, name in plan:
            prune_and_tune(args, model, cfgs[model], dense[model], name,
                           specs[name], ratio, seed, done, results)
            clock.tick()
    records = read_results(results)
    from mmseg_prune.utils.io import atomic_write_text
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_write_text(args.out + '.json', json.dumps(
        dict(command=command, dense=dense, timing=clock.segments,
             records=[{k: v for k, v in r.items() if k != 'layers'}
                      for r in records]), indent=1))
    write_markdown(args.out + '.md', records, command, dense, clock)
    write_plot(args.out + '.png', records, args.work_dir, command,
               models[0], dense[models[0]])
    clock.tick()
    log(f'wrote {args.out}.md, .json and .png; {clock.total / 60:.1f} min '
        f'in all on {args.work_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
