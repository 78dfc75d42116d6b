"""Shared fixtures: generated data and small models."""
import copy
import faulthandler
import logging

import pytest
import torch
from mmengine.logging import MMLogger

import mmseg_prune  # noqa: F401 - registers the plugin
from mmseg_prune.apis import (build_report, build_segmentor, load_config,
                              prune_segmentor, save_pruned)
from mmseg_prune.datasets import make_demo_dataset
from tests.helpers import SMALL, FakeTimer, fake_ms, small_crop_config

MMLogger.get_current_instance().setLevel(logging.WARNING)

#: A test that runs longer than this is hung: the run stops and prints
#: every thread's stack, instead of waiting for CI's limit.
TEST_TIMEOUT_S = 900


@pytest.fixture(autouse=True)
def _stop_a_hung_test():
    faulthandler.dump_traceback_later(TEST_TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A generated VOC-layout dataset of 6 images."""
    root = str(tmp_path_factory.mktemp('data') / 'voc')
    make_demo_dataset(root, num=6, seed=0)
    return root


@pytest.fixture(scope='session')
def small_dense():
    """FCN R18-D8 at 64x64 with norm scales drawn at random, as after
    training (the initial ResNet zeroes the last scale of every block,
    which blocks the gradients of the layers before it). Copy before
    changing it."""
    torch.manual_seed(0)
    model = build_segmentor(small_crop_config(SMALL, 64))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope='session')
def _small_model_once():
    return build_segmentor(load_config(SMALL))


@pytest.fixture
def small_model(_small_model_once):
    """An FCN R18-D8 with an FCN auxiliary head, initial weights: a copy of
    one built per test run."""
    return copy.deepcopy(_small_model_once)


@pytest.fixture(scope='session')
def small_pruned(tmp_path_factory):
    """The small FCN R18 pruned by 50% with L1 at 64x64 and saved: its work
    dir (pruned.pth, pruned_config.py, report) and the PruneResult."""
    cfg = load_config(SMALL)
    result = prune_segmentor(build_segmentor(cfg), 'l1', 0.5, (64, 64))
    out = str(tmp_path_factory.mktemp('pruned'))
    save_pruned(result, cfg, out, build_report(result, 'l1', 0.5))
    return out, result


@pytest.fixture
def fake_timing(monkeypatch, tmp_path):
    """Deterministic timing (:class:`tests.helpers.FakeTimer`), and a
    latency table cache in ``tmp_path``: for tests of the latency budget
    that must not depend on this machine's load."""
    import mmseg_prune.pruner.prune as prune_module
    from mmseg_prune.analysis import LatencyTable
    monkeypatch.setenv('MMSEG_PRUNE_CACHE', str(tmp_path))
    monkeypatch.setattr(prune_module, 'LatencyTimer', FakeTimer)
    monkeypatch.setattr(LatencyTable, '_time',
                        lambda self, call, cin, cout: fake_ms(call, cin,
                                                              cout))
    return tmp_path
