from mmseg_prune.analysis import (count_complexity, inference_params,
                                  measure_latency)


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


def test_latency_is_positive(small_model):
    assert measure_latency(small_model, (64, 64), warmup=1, runs=3) > 0
