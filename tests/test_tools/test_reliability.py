"""No data lost, no wrong model written with exit 0, one error line for
every bad input (tools/prune.py, tools/make_demo_data.py, tools/train.py)."""
import errno
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch

from mmseg_prune.utils.cli import run_cli

from tests.helpers import SMALL, TESTS_DIR
from test_prune_tool import ROOT, _tool

SHAPE = ['--input-shape', '64', '64']


def _prune(work_dir, *extra, config=SMALL):
    return run_cli(_tool('prune').main, [
        config, '--work-dir', str(work_dir), *SHAPE, '--criterion', 'l1',
        *extra])


def _one_error(capsys, pattern):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1, err
    assert 'Traceback' not in err
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


# -- 1. generated data never deletes a user's folder ----------------------
def test_make_demo_data_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    tool = _tool('make_demo_data')
    user = tmp_path / 'voc'
    user.mkdir()
    (user / 'precious.jpg').write_bytes(b'mine')
    assert run_cli(tool.main, [str(user), '--num', '2']) == 2
    _one_error(capsys, 'not empty and was not written by make_demo_data.py'
               '.*--overwrite')
    assert (user / 'precious.jpg').read_bytes() == b'mine'
    # The classification folder is checked before anything is written.
    fresh = tmp_path / 'fresh'
    assert run_cli(tool.main, [str(fresh), '--num', '2', '--classification',
                               str(user)]) == 2
    assert not fresh.exists()
    assert (user / 'precious.jpg').exists()
    # Its own output may be generated again; --overwrite replaces the rest.
    assert run_cli(tool.main, [str(fresh), '--num', '2']) == 0
    assert run_cli(tool.main, [str(fresh), '--num', '3']) == 0
    assert run_cli(tool.main, [str(user), '--num', '2', '--overwrite']) == 0
    assert not (user / 'precious.jpg').exists()
    assert (user / 'JPEGImages').is_dir()


# -- 2. checkpoints that do not fit ----------------------------------------
def _partial_checkpoint(tmp_path, keep):
    from mmseg_prune.apis import build_segmentor, load_config
    state = build_segmentor(load_config(SMALL)).state_dict()
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if keep(k)}), path)
    return path


def test_backbone_only_checkpoint_is_refused(tmp_path, capsys):
    ckpt = _partial_checkpoint(tmp_path, lambda k: k.startswith('backbone'))
    assert _prune(tmp_path / 'w', '--checkpoint', ckpt) == 2
    _one_error(capsys, r'does not fit.*missing \(e\.g\. decode_head.*'
               '--allow-partial-checkpoint')
    assert not (tmp_path / 'w').exists()
    # Allowed on request, and every tensor left out is named.
    assert _prune(tmp_path / 'w', '--checkpoint', ckpt,
                  '--allow-partial-checkpoint') == 0
    out = capsys.readouterr().out
    assert 'left as initialised: decode_head.conv_seg.weight' in out
    assert 'left as initialised: backbone' not in out


def test_checkpoint_with_extra_tensors_is_refused(tmp_path, capsys):
    from mmseg_prune.apis import build_segmentor, load_config
    state = build_segmentor(load_config(SMALL)).state_dict()
    state['neck.conv.weight'] = torch.zeros(1)
    path = str(tmp_path / 'extra.pth')
    torch.save(dict(state_dict=state), path)
    assert _prune(tmp_path / 'w', '--checkpoint', path) == 2
    _one_error(capsys, r'1 unexpected \(e\.g\. neck\.conv\.weight\)')


# -- 3. zero is a value ----------------------------------------------------
def test_flops_reduction_zero_is_refused_not_defaulted(tmp_path, capsys):
    assert _prune(tmp_path / 'w', '--flops-reduction', '0') == 2
    _one_error(capsys, r'must be in \(0, 1\), got 0')


# -- 4. the outputs are one set --------------------------------------------
KILLER = r'''
import os, sys, builtins, torch
sys.path[:0] = [{tests!r}, {root!r}]
import mmseg_prune.apis.prune as prune_api
calls = [0]
def fatal(function, counts=lambda *args, **kwargs: True):
    def wrapped(*args, **kwargs):
        if counts(*args, **kwargs):
            calls[0] += 1
            if calls[0] == {kill_at}:
                os._exit(137)  # like kill -9: no cleanup runs
        return function(*args, **kwargs)
    return wrapped
def writing(file, mode='r', *args, **kwargs):
    return 'w' in mode
original_save = prune_api.save_pruned
def save_pruned(*args, **kwargs):
    import matplotlib.figure, mmseg_prune.utils.io as io
    torch.save = fatal(torch.save)
    builtins.open = fatal(builtins.open, writing)
    matplotlib.figure.Figure.savefig = fatal(matplotlib.figure.Figure.savefig)
    os.rename = fatal(os.rename)
    io._exchange = fatal(io._exchange)
    return original_save(*args, **kwargs)
prune_api.save_pruned = save_pruned
import importlib.util
spec = importlib.util.spec_from_file_location('prune', {tool!r})
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
tool.save_pruned = save_pruned
from mmseg_prune.utils.cli import run_cli
sys.exit(run_cli(tool.main, {args!r}))
'''


def _set_in(work_dir):
    """The reduction of the complete set in ``work_dir``; fails on a mix."""
    from mmseg_prune.apis import build_segmentor, load_config
    names = {'pruned.pth', 'pruned_config.py', 'pruning_report.json',
             'pruning_report.png'}
    assert names <= set(os.listdir(work_dir))
    report = json.load(open(osp.join(work_dir, 'pruning_report.json')))
    ckpt = torch.load(osp.join(work_dir, 'pruned.pth'))
    assert ckpt['meta']['pruning']['flops_reduction'] == \
        report['flops_reduction']
    build_segmentor(load_config(osp.join(work_dir, 'pruned_config.py')))
    return report['flops_reduction']


def test_a_kill_at_any_write_leaves_one_whole_set(tmp_path):
    work_dir = tmp_path / 'work'
    assert _prune(work_dir, '--flops-reduction', '0.3') == 0
    (work_dir / 'notes.txt').write_text('mine')
    args = [SMALL, '--work-dir', str(work_dir), *SHAPE, '--criterion', 'l1',
            '--flops-reduction', '0.5']
    outcomes = []
    for kill_at in range(1, 30):
        script = KILLER.format(tests=TESTS_DIR, root=ROOT, kill_at=kill_at,
                               tool=osp.join(ROOT, 'tools', 'prune.py'),
                               args=args)
        code = subprocess.run([sys.executable, '-c', script],
                              capture_output=True, text=True).returncode
        outcomes.append(_set_in(work_dir))
        assert (work_dir / 'notes.txt').read_text() == 'mine'
        leftovers = [e for e in os.listdir(tmp_path) if e != 'work']
        assert code == 0 or leftovers, 'a kill leaves its temp folder'
        if code == 0:
            break
        assert code == 137
    assert outcomes[-1] == 0.5 and 0.3 in outcomes and len(outcomes) > 4
    # The next run clears the temp folders that killed runs left.
    assert _prune(work_dir, '--flops-reduction', '0.4') == 0
    assert os.listdir(tmp_path) == ['work']
    assert not [e for e in os.listdir(work_dir) if e.startswith('.')]


def test_failed_save_leaves_the_previous_set(tmp_path, monkeypatch, capsys):
    work_dir = tmp_path / 'work'
    assert _prune(work_dir, '--flops-reduction', '0.3') == 0
    capsys.readouterr()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch, 'save', no_space)
    assert _prune(work_dir, '--flops-reduction', '0.5') == 2
    _one_error(capsys, f'no space left on {tmp_path}')
    monkeypatch.undo()
    assert _set_in(work_dir) == 0.3
    assert os.listdir(tmp_path) == ['work']


def test_outputs_get_the_umask_mode_and_a_rerun_says_so(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert _prune(tmp_path / 'w') == 0
        assert _prune(tmp_path / 'w') == 0
    finally:
        os.umask(old)
    for name in os.listdir(tmp_path / 'w'):
        assert os.stat(tmp_path / 'w' / name).st_mode & 0o777 == 0o644, name
    assert capsys.readouterr().out.count(
        'replaced the previous pruned model') == 1


def test_ctrl_c_after_the_save_tells_the_truth(tmp_path, monkeypatch,
                                               capsys):
    tool = _tool('prune')

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'tune_and_evaluate', interrupted)
    assert run_cli(tool.main, [SMALL, '--work-dir', str(tmp_path / 'w'),
                               *SHAPE, '--criterion', 'l1']) == 130
    err = capsys.readouterr().err
    assert 'pruned model in' in err and 'is complete' in err
    assert 'nothing was written' not in err


# -- 5. non-finite weights --------------------------------------------------
def test_non_finite_weights_are_refused_for_every_criterion(tmp_path,
                                                            capsys):
    from mmseg_prune.apis import build_segmentor, load_config
    state = build_segmentor(load_config(SMALL)).state_dict()
    state['backbone.layer1.0.bn1.weight'][3] = float('nan')
    path = str(tmp_path / 'nan.pth')
    torch.save(dict(state_dict=state), path)
    for criterion in ('bn_scale', 'random'):
        assert run_cli(_tool('prune').main, [
            SMALL, '--work-dir', str(tmp_path / 'w'), *SHAPE, '--checkpoint',
            path, '--criterion', criterion]) == 2
        _one_error(capsys, 'non-finite values.*backbone.layer1.0.bn1.weight')
    assert not (tmp_path / 'w').exists()


# -- 6. unusable work dirs, found before any work ----------------------------
def test_unusable_work_dirs(tmp_path, monkeypatch, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    assert _prune(afile) == 2
    _one_error(capsys, 'is a file, not a folder')
    assert _prune(afile / 'sub') == 2
    _one_error(capsys, 'cannot be created')
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system')

    monkeypatch.setattr(tempfile, 'mkstemp', read_only)
    assert _prune(tmp_path / 'ro') == 2
    _one_error(capsys, 'not writable \\(Read-only file system')


# -- 7. what used to end in a traceback --------------------------------------
def _state_not_a_dict(t):
    path = str(t / 'odd.pth')
    torch.save(dict(state_dict=[1, 2, 3]), path)
    return ['--checkpoint', path]


def _file(t, name, data):
    path = t / name
    path.write_bytes(data)
    return ['--checkpoint', str(path)]


def _criterion_with_unknown_keyword(t):
    path = t / 'cfg.py'
    path.write_text(f"_base_ = ['{SMALL}']\n"
                    "pruning = dict(criterion=dict(type='fpgm', beta=2))\n")
    return ['--config', str(path)]


def _legacy_pickle(t):
    path = str(t / 'legacy.pth')
    torch.save(dict(state_dict={}), path, _use_new_zipfile_serialization=False)
    return ['--checkpoint', path]


TRACEBACKS = {
    'cfg-options without =': (lambda t: ['--cfg-options', 'garbage'],
                              'KEY=VALUE items, got "garbage"'),
    'reduction of the wrong type': (
        lambda t: ['--cfg-options', 'pruning.flops_reduction=abc'],
        "pruning.flops_reduction must be a number.*'abc'"),
    'model not a dict': (lambda t: ['--cfg-options', 'model=5'],
                         'must be a dict with a type, got 5'),
    'state_dict not a dict': (_state_not_a_dict,
                              'state_dict .* is not a dict of tensors'),
    'unknown criterion keyword': (_criterion_with_unknown_keyword,
                                  "does not take these arguments.*beta"),
    'empty .pth': (lambda t: _file(t, 'empty.pth', b''), 'cannot read'),
    'text .pth': (lambda t: _file(t, 'text.pth', b'hello\n'), 'cannot read'),
    'legacy-format pickle': (_legacy_pickle, 'does not fit.*missing'),
}


@pytest.mark.parametrize('case', sorted(TRACEBACKS))
def test_one_error_line_instead_of_a_traceback(case, tmp_path, capsys):
    make_args, message = TRACEBACKS[case]
    args = make_args(tmp_path)
    config = SMALL
    if args[0] == '--config':
        config, args = args[1], args[2:]
    # --criterion is the config's own here.
    assert run_cli(_tool('prune').main, [
        config, '--work-dir', str(tmp_path / 'w'), *SHAPE, *args]) == 2
    _one_error(capsys, message)
    assert not (tmp_path / 'w').exists()


def _voc_config(demo_root, tmp_path, breaking):
    from tests.helpers import small_voc_config
    from mmseg_prune.datasets import make_demo_dataset
    root = str(tmp_path / 'data')
    make_demo_dataset(root, num=4, seed=1)
    breaking(root)
    cfg = small_voc_config(root)
    cfg.pop('pruning')
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    return path


def _remove_masks(root):
    for sub in ('SegmentationClass', 'SegmentationClassAug'):
        for name in os.listdir(osp.join(root, sub)):
            os.remove(osp.join(root, sub, name))


def _labels_out_of_range(root):
    from PIL import Image
    for sub in ('SegmentationClass', 'SegmentationClassAug'):
        for name in os.listdir(osp.join(root, sub)):
            path = osp.join(root, sub, name)
            image = Image.open(path)
            image.putdata([40] * (image.size[0] * image.size[1]))
            image.save(path)


@pytest.mark.parametrize('breaking', [_remove_masks, _labels_out_of_range])
def test_taylor_on_broken_data(breaking, demo_root, tmp_path, capsys):
    config = _voc_config(demo_root, tmp_path, breaking)
    assert run_cli(_tool('prune').main, [
        config, '--work-dir', str(tmp_path / 'w'), '--criterion', 'taylor',
        '--cfg-options', 'pruning.calibration_batches=1']) == 2
    _one_error(capsys, 'taylor|Taylor')
    assert not (tmp_path / 'w').exists()


# -- 8. checkpoints with an empty HistoryBuffer ------------------------------
def test_empty_history_buffer_loads_with_plain_torch_load(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = str(tmp_path / 'hub.pth')
    full = HistoryBuffer()
    full.update(1.0)
    full.update(2.0)
    torch.save(dict(message_hub=dict(log_scalars=dict(
        empty=HistoryBuffer(), full=full))), path)
    hub = torch.load(path, weights_only=True)['message_hub']['log_scalars']
    assert len(hub['empty'].data[0]) == 0
    assert hub['full'].mean() == 1.5


def test_legacy_format_checkpoints_load(tmp_path):
    from mmseg_prune.utils import load_checkpoint_file
    path = str(tmp_path / 'legacy.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(2)), meta=dict(a=1)), path,
               _use_new_zipfile_serialization=False, pickle_protocol=2)
    ckpt = load_checkpoint_file(path)
    torch.testing.assert_close(ckpt['state_dict']['w'], torch.ones(2))

    class Evil:

        def __reduce__(self):
            return (os.system, ('true', ))

    torch.save(dict(x=Evil()), path, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(path)


# -- 9. --resume with a config that sets load_from ----------------------------
def test_resume_with_load_from(tmp_path, capsys):
    tool = _tool('train')
    work_dir = tmp_path / 'work'
    args = [SMALL, '--work-dir', str(work_dir), '--resume', '--cfg-options',
            'load_from=dense.pth']
    with pytest.raises(Exception) as info:
        tool.resume_args(args)
    assert 'no checkpoint in' in str(info.value)
    assert 'run without --resume' in str(info.value)
    assert run_cli(tool.main, args) == 2
    work_dir.mkdir()
    (work_dir / 'iter_4.pth').write_bytes(b'')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    assert tool.resume_args(args) == ['--cfg-options', 'load_from=None']
    assert tool.resume_args(args[:3]) == []  # no load_from: MMEngine's way
