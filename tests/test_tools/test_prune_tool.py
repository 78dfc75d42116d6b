"""tools/prune.py and tools/get_flops.py: outputs, figures and bad input."""
import json
import os
import os.path as osp

import pytest
import torch

from mmseg_prune.utils.cli import run_cli

from tests.helpers import ROOT, SMALL, load_script


def _tool(name):
    return load_script('tools', name)


@pytest.fixture(scope='module')
def pruned(tmp_path_factory):
    """tools/prune.py run once on the small config."""
    work_dir = str(tmp_path_factory.mktemp('prune'))
    code = run_cli(_tool('prune').main, [
        SMALL, '--work-dir', work_dir, '--flops-reduction', '0.4',
        '--input-shape', '64', '64', '--criterion', 'bn_scale'
    ])
    assert code == 0
    return work_dir


def test_writes_checkpoint_config_and_report(pruned):
    assert sorted(os.listdir(pruned)) == [
        'pruned.pth', 'pruned_config.py', 'pruning_report.json',
        'pruning_report.png']
    from PIL import Image
    with Image.open(osp.join(pruned, 'pruning_report.png')) as figure:
        assert figure.size[0] > 800 and figure.size[1] > 300
    report = json.load(open(osp.join(pruned, 'pruning_report.json')))
    assert report['input_shape'] == [64, 64]
    assert report['criterion'] == 'bn_scale'
    assert report['flops_reduction'] == 0.4
    dense, after = report['dense'], report['pruned']
    assert abs(1 - after['flops'] / dense['flops'] - 0.4) <= 0.005
    assert after['params'] < dense['params']
    assert report['layers']['decode_head.conv_seg'] == [19, 19]
    pruned_layers = {n for n, (kept, total) in report['layers'].items()
                     if kept < total}
    assert pruned_layers
    ckpt = torch.load(osp.join(pruned, 'pruned.pth'))
    structure = ckpt['meta']['pruned_structure']
    assert pruned_layers <= set(structure)
    for name in pruned_layers:
        assert structure[name]['attrs']['out_channels'] == \
            report['layers'][name][0]


def test_prints_tables(pruned, capsys):
    code = run_cli(_tool('get_flops').main, [
        osp.join(pruned, 'pruned_config.py'), '--shape', '64', '64',
        '--latency', '--runs', '1'
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert 'FLOPs (MACs)' in out and '1x3x64x64' in out
    assert 'backbone.layer1' in out and 'ms' in out
    report = json.load(open(osp.join(pruned, 'pruning_report.json')))
    flops = report['pruned']['flops'] / 1e6
    assert f'{flops:.2f} M' in out


def _bad_config(tmp_path):
    path = tmp_path / 'backbone_only.py'
    path.write_text("model = dict(type='ResNetV1c', depth=18)\n")
    return str(path)


def _garbage(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(b'not a checkpoint')
    return str(path)


def _other_model_checkpoint(tmp_path):
    from mmseg_prune.apis import build_segmentor, load_config
    model = build_segmentor(load_config(
        'mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py'))
    path = str(tmp_path / 'r50.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


BAD_INPUTS = {
    'not a segmentor': (lambda t, p: [_bad_config(t)],
                        'not an mmseg encoder-decoder'),
    'reduction outside (0, 1)':
    (lambda t, p: [SMALL, '--flops-reduction', '1.5'], r'in \(0, 1\)'),
    'unknown criterion': (lambda t, p: [SMALL, '--criterion', 'l7'],
                          'unknown criterion'),
    'checkpoint of another model':
    (lambda t, p: [SMALL, '--checkpoint', _other_model_checkpoint(t)],
     'does not fit'),
    'pruned checkpoint with a dense config':
    (lambda t, p: [SMALL, '--checkpoint', osp.join(p, 'pruned.pth')],
     'pruned_config.py'),
    'missing config': (lambda t, p: [str(t / 'nope.py')], 'does not exist'),
    'unreadable checkpoint': (lambda t, p: [SMALL, '--checkpoint',
                                            _garbage(t)], 'cannot read'),
    'missing data root':
    (lambda t, p: [SMALL, '--criterion', 'taylor', '--data-root',
                   str(t / 'no_data')], 'make_demo_data'),
    'FLOPs and latency targets at once':
    (lambda t, p: [SMALL, '--flops-reduction', '0.5', '--latency-reduction',
                   '0.4'], 'not both'),
    'latency cost without a latency target':
    (lambda t, p: [SMALL, '--cfg-options', 'pruning.budget.cost=latency'],
     'pass --latency-reduction R'),
    'latency reduction outside (0, 1)':
    (lambda t, p: [SMALL, '--latency-reduction', '0'],
     r'--latency-reduction must be in \(0, 1\)'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_error(case, pruned, tmp_path, capsys):
    make_args, message = BAD_INPUTS[case]
    work_dir = tmp_path / 'work'
    args = make_args(tmp_path, pruned) + [
        '--work-dir', str(work_dir), '--input-shape', '64', '64'
    ]
    assert run_cli(_tool('prune').main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith('error: ')]
    assert len(errors) == 1, err
    assert 'Traceback' not in '\n'.join(err)
    import re
    assert re.search(message, errors[0]), errors[0]
    assert not work_dir.exists()  # nothing half-written


def test_pruned_config_of_another_model(pruned, tmp_path, capsys):
    """A pruned checkpoint with a pruned config of another model."""
    from mmseg_prune.apis import load_config
    from mmseg_prune.structure import (decode_architecture,
                                       encode_architecture)
    cfg = load_config(osp.join(pruned, 'pruned_config.py'))
    structure = decode_architecture(cfg.model.pruned_structure)
    layer = [n for n, spec in structure.items()
             if 'out_channels' in spec['attrs']][0]
    structure[layer]['shapes']['weight'][0] -= 1
    structure[layer]['attrs']['out_channels'] -= 1
    cfg.model.pruned_structure = encode_architecture(structure)
    cfg.model.pruned_weights = None
    other = str(tmp_path / 'other_pruned_config.py')
    cfg.dump(other)
    code = run_cli(_tool('get_flops').main, [
        other, '--checkpoint', osp.join(pruned, 'pruned.pth'), '--shape',
        '64', '64'
    ])
    assert code == 2
    assert 'does not fit' in capsys.readouterr().err


def test_latency_reduction(fake_timing, tmp_path, capsys):
    """--latency-reduction prunes to a share of the measured latency (timed
    here by the deterministic stand-in of tests/helpers.py)."""
    work_dir = str(tmp_path / 'work')
    assert run_cli(_tool('prune').main, [
        SMALL, '--work-dir', work_dir, '--latency-reduction', '0.3',
        '--input-shape', '64', '64', '--criterion', 'l1'
    ]) == 0
    out = capsys.readouterr().out
    assert 'pruning 30% of the latency' in out
    assert 'Latency reduction' in out and 'target 30.00%' in out
    report = json.load(open(osp.join(work_dir, 'pruning_report.json')))
    assert report['latency_reduction'] == 0.3
    assert report['flops_reduction'] is None
    latency = report['latency']
    assert abs(latency['pruned_ms'] / (0.7 * latency['dense_ms']) - 1) <= 0.05
    assert osp.isfile(latency['table'])
    ckpt = torch.load(osp.join(work_dir, 'pruned.pth'))
    assert ckpt['meta']['pruning']['latency_reduction'] == 0.3


def test_config_pruning_section_and_cfg_options(tmp_path):
    config = osp.join(ROOT, 'configs', 'baselines',
                      'deeplabv3_r50-d8_voc12aug_l1-50.py')
    work_dir = str(tmp_path / 'work')
    code = run_cli(_tool('prune').main, [
        config, '--work-dir', work_dir, '--input-shape', '64', '64',
        '--cfg-options', 'pruning.criterion=random',
        'pruning.flops_reduction=0.3', 'pruning.budget.round_to=4'
    ])
    assert code == 0
    report = json.load(open(osp.join(work_dir, 'pruning_report.json')))
    assert report['criterion'] == 'random'
    assert abs(report['achieved_reduction'] - 0.3) <= 0.005
    assert all(kept % 4 == 0 or kept == total
               for kept, total in report['layers'].values()
               if kept < total)


def test_runs_repeat(tmp_path):
    """Without a checkpoint the initial weights are seeded: same plan twice."""
    reports = []
    for run in ('a', 'b'):
        work_dir = str(tmp_path / run)
        assert run_cli(_tool('prune').main, [
            SMALL, '--work-dir', work_dir, '--input-shape', '64', '64',
            '--criterion', 'l1'
        ]) == 0
        reports.append(json.load(open(osp.join(work_dir,
                                               'pruning_report.json'))))
    assert reports[0]['layers'] == reports[1]['layers']
    assert reports[0]['pruned'] == reports[1]['pruned']


@pytest.mark.filterwarnings('ignore:MTPSegmentor has no classifier')
def test_mtp_flow_on_generated_data(demo_root, tmp_path):
    """--criterion mtp: search, fold, prune, fine-tune, evaluate."""
    from tests.helpers import small_voc_config
    cfg = small_voc_config(demo_root)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=2)
    cfg.pop('pruning')
    config = str(tmp_path / 'fcn_voc.py')
    cfg.dump(config)
    work_dir = str(tmp_path / 'work')
    assert run_cli(_tool('prune').main, [
        config, '--work-dir', work_dir, '--criterion', 'mtp',
        '--flops-reduction', '0.5', '--finetune', '2', '--eval',
        '--cfg-options', 'pruning.calibration_batches=4'
    ]) == 0
    report = json.load(open(osp.join(work_dir, 'pruning_report.json')))
    assert report['criterion'] == 'mtp'
    assert abs(report['achieved_reduction'] - 0.5) <= 0.005
    assert report['finetune_iters'] == 2
    assert {'dense', 'pruned'} <= set(report['evaluation'])
    assert 'mIoU' in report['evaluation']['pruned']
    assert osp.isfile(osp.join(work_dir, 'finetune', 'iter_2.pth'))


def test_finetune_with_one_image_per_batch_is_refused(demo_root, tmp_path,
                                                      capsys):
    from mmseg_prune.models import strip_pretrained
    from tests.helpers import small_crop_config, small_voc_config
    # DeepLabV3's image pooling meets one value per channel in a batch of
    # one image; R18 has the same topology as R50.
    cfg = small_voc_config(demo_root, 64)
    cfg.model = strip_pretrained(small_crop_config(
        'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
        64).model)
    cfg.model.decode_head.num_classes = 21
    cfg.model.auxiliary_head.num_classes = 21
    cfg.pop('pruning')
    config = str(tmp_path / 'dlv3.py')
    cfg.dump(config)
    assert run_cli(_tool('prune').main, [
        config, '--work-dir', str(tmp_path / 'work'), '--finetune', '1',
        '--cfg-options', 'train_dataloader.batch_size=1',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ]) == 2
    err = capsys.readouterr().err
    assert 'batch_size >= 2' in err and 'Traceback' not in err
    # Refused before pruning: nothing was written.
    assert not (tmp_path / 'work').exists()


def test_finetune_with_distillation(demo_root, tmp_path):
    """--finetune --distill: the dense model teaches through a KD loss that
    the fine-tuning run logs; the checkpoint stays a plain pruned one."""
    import torch

    from tests.helpers import small_voc_config
    cfg = small_voc_config(demo_root)
    cfg.pop('pruning')
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    config = str(tmp_path / 'fcn_voc.py')
    cfg.dump(config)
    from mmseg_prune.apis import build_segmentor
    dense = str(tmp_path / 'dense.pth')
    torch.save(dict(state_dict=build_segmentor(cfg).state_dict()), dense)
    work_dir = tmp_path / 'work'
    args = [config, '--work-dir', str(work_dir), '--checkpoint', dense,
            '--finetune', '2', '--distill']
    assert run_cli(_tool('prune').main, args) == 0
    report = json.load(open(work_dir / 'pruning_report.json'))
    assert report['distill'] is True and report['finetune_iters'] == 2
    # The run's message hub (saved in its checkpoint) logged loss_kd at
    # both iterations; log files may go to an earlier runner's folder when
    # two runners start within one second (MMEngine names them by time).
    ckpt = torch.load(work_dir / 'finetune' / 'iter_2.pth')
    scalars = ckpt['message_hub']['log_scalars']
    values, counts = scalars['train/loss_kd'].data
    assert len(values) == 2 and (values > 0).all()
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])


def test_distill_needs_a_teacher(tmp_path, capsys):
    assert run_cli(_tool('prune').main, [
        SMALL, '--work-dir', str(tmp_path / 'w'), '--distill'
    ]) == 2
    assert '--distill needs --finetune' in capsys.readouterr().err
    assert not (tmp_path / 'w').exists()
