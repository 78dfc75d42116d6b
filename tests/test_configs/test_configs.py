"""Every shipped config loads, builds its hooks, and names real modules."""
import fnmatch
import glob
import os.path as osp

import pytest
from mmseg.registry import HOOKS

from mmseg_prune.apis import build_segmentor, load_config

from tests.helpers import TESTS_DIR

# Files under _base_ folders are fragments that configs inherit.
CONFIGS = sorted(p for p in glob.glob(osp.join(
    osp.dirname(TESTS_DIR), 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config(path):
    cfg = load_config(path)
    model = build_segmentor(cfg)
    names = [n for n, _ in model.named_modules()]
    hooks = cfg.get('custom_hooks', [])
    patterns = list(cfg.pruning.ignore) + list(cfg.model.get('ignore', []))
    for hook in hooks:
        HOOKS.build(hook)
        patterns += hook.get('ignore', [])
    for pattern in patterns:
        assert any(fnmatch.fnmatch(n, pattern) for n in names), pattern


def test_the_card_config_prunes_with_sirfp_at_2x():
    cfg = load_config(osp.join(osp.dirname(TESTS_DIR), 'configs',
                               'deeplabv3_voc_sirfp.py'))
    assert cfg.pruning.criterion['type'] == 'SIRFPCriterion'
    assert cfg.pruning.flops_reduction == 0.5
    assert cfg.pruning.budget['mode'] == 'split'


@pytest.mark.parametrize('path', [p for p in CONFIGS if '/mtp/' in p],
                         ids=osp.basename)
def test_mtp_recipes_wrap_the_zoo_model_at_2x(path):
    cfg = load_config(path)
    assert cfg.model.type == 'MTPSegmentor'
    assert cfg.model.segmentor.type == 'EncoderDecoder'
    assert cfg.pruning.criterion['type'] == 'MTPCriterion'
    assert cfg.pruning.flops_reduction == 0.5
    pruning_hook, = [h for h in cfg.custom_hooks
                     if h['type'] == 'PruningHook']
    assert pruning_hook['schedule'] == [
        dict(iter=cfg.search_iters, flops_reduction=0.5)]
    assert cfg.train_cfg.max_iters > cfg.search_iters
