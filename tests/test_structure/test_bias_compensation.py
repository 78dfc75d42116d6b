"""Bias compensation: removed channels' constant output moves into the next
layer, computed here by hand on FCN R18's layers."""
import copy

import torch

from mmseg_prune.apis import prune_segmentor
from mmseg_prune.structure import SegmentorGraph
from mmseg_prune.structure.bias_compensation import compensated_biases
from tests.helpers import producers

GROUP = 'backbone.layer1.0.conv1'  # conv1 -> bn1 -> relu -> conv2 -> bn2


def _graph(small_dense):
    return SegmentorGraph(copy.deepcopy(small_dense), (64, 64))


def test_shift_of_the_next_norm_by_hand(small_dense):
    graph = _graph(small_dense)
    bn1 = graph.modules['backbone.layer1.0.bn1']
    conv2 = graph.modules['backbone.layer1.0.conv2']
    bn2 = graph.modules['backbone.layer1.0.bn2']
    with torch.no_grad():
        bn1.bias[:4] = torch.tensor([0.5, -0.3, 0.2, 1.0])
    keep = {GROUP: torch.arange(4, bn1.num_features)}
    before = bn2.running_mean.clone()
    # conv2 has no bias: bn2's running mean drops by the missing input.
    beta = torch.relu(bn1.bias[:4].detach())
    expected = before - (conv2.weight[:, :4].detach().sum((2, 3)) *
                         beta).sum(1)
    with compensated_biases(graph, keep):
        torch.testing.assert_close(bn2.running_mean, expected)
    torch.testing.assert_close(bn2.running_mean, before)  # restored


def test_pruned_model_matches_dense_where_removed_channels_are_constant(
        small_dense):
    """With gamma = 0 the removed channels output relu(beta) everywhere, so
    the compensated model equals the dense one away from the borders of the
    padded conv; the uncompensated one does not."""
    dense = copy.deepcopy(small_dense)
    bn1 = dense.backbone.layer1[0].bn1
    with torch.no_grad():
        bn1.weight[:8] = 0
        bn1.bias[:8] = torch.linspace(0.2, 1.0, 8)
    graph = SegmentorGraph(dense, (64, 64))
    keep = {GROUP: torch.arange(8, bn1.num_features)}
    inputs = torch.randn(1, 3, 64, 64)
    outputs = {}

    def capture(key):
        return lambda mod, args, out: outputs.__setitem__(key, out)

    def bn2_output(model, key):
        handle = model.backbone.layer1[0].bn2.register_forward_hook(
            capture(key))
        with torch.no_grad():
            model.eval()(inputs)
        handle.remove()
        return outputs[key][..., 1:-1, 1:-1]

    reference = bn2_output(graph.model, 'dense')
    with compensated_biases(graph, keep):
        compensated = graph.prune(keep)
    plain = graph.prune(keep)
    torch.testing.assert_close(bn2_output(compensated, 'comp'), reference,
                               atol=1e-4, rtol=1e-4)
    assert (bn2_output(plain, 'plain') - reference).abs().max() > 1e-2


def test_residual_streams_are_left_alone(small_dense):
    graph = _graph(small_dense)
    stream = [g for g in graph.groups
              if 'backbone.layer1.0.conv2' in producers(g)][0]
    buffers = {n: b.clone() for n, b in graph.model.named_buffers()}
    params = {n: p.detach().clone()
              for n, p in graph.model.named_parameters()}
    with compensated_biases(graph, {stream.name: torch.arange(8)}):
        for name, value in graph.model.named_buffers():
            assert torch.equal(value, buffers[name]), name
        for name, value in graph.model.named_parameters():
            assert torch.equal(value, params[name]), name


def test_option_of_prune_segmentor(small_dense):
    """SIRFP's default, any criterion's option; it changes only biases and
    running means, never the structure."""
    plain = prune_segmentor(copy.deepcopy(small_dense), 'l1', 0.4, (64, 64))
    comp = prune_segmentor(copy.deepcopy(small_dense), 'l1', 0.4, (64, 64),
                           bias_compensation=True)
    assert plain.layers == comp.layers
    changed = [n for n, v in comp.model.state_dict().items()
               if not torch.equal(v, plain.model.state_dict()[n])]
    assert changed and all(n.endswith(('running_mean', 'bias'))
                           for n in changed)
