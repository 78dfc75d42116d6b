import numpy as np
import pytest
import torch
import torch.nn as nn

from mmseg_prune.criteria import (RedundancyStatistics, batch_detail,
                                    batch_redundancy)


def numpy_redundancy(x):
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    flat = flat / (np.abs(flat).sum(-1, keepdims=True) + 1e-5)
    return np.mean([f @ f.T for f in flat], axis=0)


def numpy_detail(x):
    sobel = np.array([[-.5, 0, .5], [-1, 0, 1], [-.5, 0, .5]])
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy:dy + h, dx:dx + w]
            gx += sobel[dy, dx] * window  # cross-correlation, as conv2d
            gy += sobel.T[dy, dx] * window
    magnitude = np.sqrt(gx**2 + gy**2).reshape(n, c, -1)
    # The population std (ddof=0), as the official code computes E.
    return magnitude.std(-1, ddof=0).mean(0)


def test_batch_statistics_equal_numpy():
    x = torch.randn(3, 5, 7, 9, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(batch_redundancy(x).numpy(),
                               numpy_redundancy(x.double().numpy()),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batch_detail(x).numpy(),
                               numpy_detail(x.double().numpy()), rtol=1e-5)


def test_wide_layers_use_the_blocked_gram_and_equal_numpy():
    # 600 channels: two full 256-channel stripes and a partial one.
    x = torch.randn(2, 600, 4, 5, generator=torch.Generator().manual_seed(1))
    redundancy = batch_redundancy(x)
    np.testing.assert_allclose(redundancy.numpy(),
                               numpy_redundancy(x.double().numpy()),
                               rtol=1e-5, atol=1e-7)
    assert torch.equal(redundancy, redundancy.t())


def test_fused_kernels_equal_numpy(monkeypatch):
    """Large maps take torch.compile's fused kernels; they give the same
    statistics (forced here on a small map)."""
    from mmseg_prune.criteria import sirfp_statistics
    monkeypatch.setattr(sirfp_statistics, 'FUSE_MIN_ELEMENTS', 0)
    monkeypatch.setattr(sirfp_statistics, '_fused',
                        dict(function=None, failed=False, calls=0))
    x = torch.randn(3, 5, 7, 9, generator=torch.Generator().manual_seed(0))
    redundancy, detail = sirfp_statistics.map_statistics(x)
    assert sirfp_statistics._fused == dict(
        sirfp_statistics._fused, failed=False, calls=1)
    np.testing.assert_allclose(redundancy.numpy(),
                               numpy_redundancy(x.double().numpy()),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(detail.numpy(),
                               numpy_detail(x.double().numpy()), rtol=1e-5)


def test_reused_padding_buffer_leaves_no_stale_values():
    """A buffer that held a larger batch pads a smaller one with zeros."""
    from mmseg_prune.criteria.sirfp_statistics import PaddedMaps
    padded_maps = PaddedMaps()
    gen = torch.Generator().manual_seed(2)
    for shape in [(2, 6, 9, 11), (3, 2, 5, 4), (1, 7, 6, 6)]:
        x = torch.randn(*shape, generator=gen) + 3  # borders far from 0
        np.testing.assert_allclose(batch_detail(x, padded_maps).numpy(),
                                   numpy_detail(x.double().numpy()),
                                   rtol=1e-5)


def test_pooled_maps_have_no_detail():
    """Image-pooling branches give 1x1 maps: E is 0 there, not NaN."""
    x = torch.randn(2, 4, 1, 1)
    assert torch.equal(batch_detail(x), torch.zeros(4))
    assert torch.isfinite(batch_redundancy(x)).all()


def test_statistics_stay_float32_under_mixed_precision():
    """Under bfloat16 autocast (BF16OptimWrapper) the hooked layer's output
    is bfloat16, but S and E are float32 products of it, not bfloat16."""
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64)).eval()
    stats = RedundancyStatistics(model, ['1'])
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        output = model(x)
    stats.remove()
    assert output.dtype == torch.bfloat16
    maps = output.float().double().numpy()
    np.testing.assert_allclose(stats.redundancy['1'].numpy(),
                               numpy_redundancy(maps), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.detail['1'].numpy(),
                               numpy_detail(maps), rtol=1e-5)


@pytest.mark.parametrize('momentum', [None, 0.9])
def test_hooks_accumulate_running_mean_or_ema(momentum):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    stats = RedundancyStatistics(model, ['1'], momentum=momentum)
    batches = [torch.randn(2, 3, 8, 8) for _ in range(3)]
    outputs = []
    with torch.no_grad():
        for batch in batches:
            outputs.append(model(batch))
    stats.remove()
    with torch.no_grad():
        model(batches[0])  # no longer counted
    per_batch = [batch_redundancy(o) for o in outputs]
    if momentum is None:
        expected = sum(per_batch) / 3
    else:
        expected = torch.zeros(4, 4)
        for s in per_batch:
            expected = momentum * expected + (1 - momentum) * s
    torch.testing.assert_close(stats.redundancy['1'], expected)
    assert stats.counts['1'] == 3


def test_batch_statistics_normalise_by_the_batch_and_restore_buffers(
        small_dense):
    import copy

    from mmseg_prune.criteria import batch_statistics
    model = copy.deepcopy(small_dense).eval()
    bn = model.backbone.stem[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64) * 3 + 1
    seen = []
    handle = bn.register_forward_hook(  # before the in-place ReLU
        lambda m, a, out: seen.append(out.clone()))
    with torch.no_grad(), batch_statistics(model):
        model.backbone(x)
    with torch.no_grad():
        model.backbone(x)
    handle.remove()
    # Train mode: each channel normalised by the batch's own statistics.
    conv_out = model.backbone.stem[0](x)
    mean = conv_out.mean((0, 2, 3), keepdim=True)
    var = conv_out.var((0, 2, 3), unbiased=False, keepdim=True)
    expected = (conv_out - mean) / (var + bn.eps).sqrt() * \
        bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(seen[0], expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(seen[0], seen[1], atol=1e-3)
    assert not bn.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_batch_statistics_keep_running_ones_for_one_value_per_channel(
        small_dense):
    """Image pooling on one image: batch statistics would be degenerate."""
    import copy

    from mmseg_prune.criteria import batch_statistics
    model = copy.deepcopy(small_dense).eval()
    bn = model.backbone.stem[1]
    x = torch.randn(1, bn.num_features, 1, 1)
    with torch.no_grad():
        expected = bn(x)
        with batch_statistics(model):
            torch.testing.assert_close(bn(x), expected)


@pytest.mark.parametrize('momentum, expected', [
    # Running mean over the steps where gamma * dL/dgamma > 0:
    # channel 0 takes steps 1 and 2, channel 1 step 2, channel 2 steps 2, 3.
    (None, [(0.2 + 0.4) / 2, 0.5, (0.3 + 0.9) / 2]),
    # EMA from zero with r = 0.5, on the same steps only.
    (0.5, [0.5 * (0.5 * 0.2) + 0.5 * 0.4, 0.5 * 0.5,
           0.5 * (0.5 * 0.3) + 0.5 * 0.9]),
])
def test_gradient_term_is_conditional_on_gamma_times_gradient(
        momentum, expected):
    norm = nn.BatchNorm2d(3)
    norm.weight.data = torch.tensor([1.0, -2.0, 0.5])
    model = nn.Sequential(norm)
    # The loss scale in force divides the gradients back.
    stats = RedundancyStatistics(model, ['0'], momentum=momentum,
                                 gradients=True, loss_scale=lambda: 4.0)
    for grad in ([0.2, 0.3, -0.1], [0.4, -0.5, 0.3], [-0.6, 0.7, 0.9]):
        norm.weight.grad = None
        (norm.weight * torch.tensor(grad) * 4.0).sum().backward()
    stats.remove()
    torch.testing.assert_close(stats.gradient['0'],
                               torch.tensor(expected))
