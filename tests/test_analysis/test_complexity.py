import math

import pytest
import torch
import torch.nn as nn
from mmengine.analysis import get_model_complexity_info

from mmseg_prune.analysis import (InferenceForward, count_complexity,
                                  inference_params)
from mmseg_prune.apis import prune_segmentor


def test_counts_multiply_adds(small_model):
    complexity = count_complexity(small_model, (64, 96))
    stem = small_model.backbone.stem[0]  # 3x3 conv, stride 2
    assert complexity.input_shape == (64, 96)
    assert complexity.by_module['backbone.stem.0'] == (
        stem.out_channels * stem.in_channels * 9 * 32 * 48)
    assert complexity.flops == complexity.by_module['']
    assert complexity.flops > complexity.by_module['backbone']


def test_auxiliary_head_is_not_counted(small_model):
    complexity = count_complexity(small_model, (64, 64))
    assert complexity.by_module.get('auxiliary_head', 0) == 0
    aux = sum(p.numel() for p in small_model.auxiliary_head.parameters())
    total = sum(p.numel() for p in small_model.parameters())
    assert complexity.params == total - aux == inference_params(small_model)
    small_model.auxiliary_head = None
    assert count_complexity(small_model, (64, 64)).flops == complexity.flops


def test_counting_keeps_training_mode(small_model):
    small_model.train()
    count_complexity(small_model, (64, 64))
    assert small_model.training


@pytest.mark.parametrize('pruned', [False, True])
def test_flops_agree_with_mmengine_and_a_hand_sum(small_model, pruned):
    model = prune_segmentor(small_model, 'l1', 0.5, (64, 64)).model \
        if pruned else small_model.eval()
    ours = count_complexity(model, (64, 64))
    # A second counter: mmengine's public entry point on the same forward.
    info = get_model_complexity_info(InferenceForward(model),
                                     inputs=(torch.zeros(1, 3, 64, 64), ),
                                     show_table=False, show_arch=False)
    assert info['flops'] == ours.flops
    # A hand sum: output elements x input channels per group x kernel, for
    # every conv and linear layer the inference forward runs.
    hand = {}

    def count(name):
        def hook(module, inputs, output):
            if isinstance(module, nn.Linear):
                macs = output.numel() * module.in_features
            else:
                macs = output.numel() * module.in_channels // module.groups \
                    * math.prod(module.kernel_size)
            hand[name] = hand.get(name, 0) + macs
        return hook

    handles = [m.register_forward_hook(count(n))
               for n, m in model.named_modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64), mode='tensor')
    for handle in handles:
        handle.remove()
    assert len(hand) > 20
    assert {n: ours.by_module[n] for n in hand} == hand
    # The rest (norms, activations, resizing) is a small share.
    assert 0 <= ours.flops - sum(hand.values()) < 0.05 * ours.flops
