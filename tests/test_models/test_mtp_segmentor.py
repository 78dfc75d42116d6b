"""MTPSegmentor: gates, the two tasks' gradients, folding, the classifier."""
import copy

import pytest
import torch

from mmseg_prune.models import MTPSegmentor, load_classifier
from mmseg_prune.structure import forward_all_heads
from mmseg_prune.utils import PruneError

from tests.helpers import fake_batch

SIZE = 64


def _wrap(dense, **kwargs):
    kwargs.setdefault('sparsity', 0.0)
    with pytest.warns(UserWarning, match='classifier.checkpoint'):
        return MTPSegmentor(copy.deepcopy(dense), input_shape=(SIZE, SIZE),
                            **kwargs)


def _grads(model, task, cls_batch=None):
    model.zero_grad(set_to_none=True)
    model.task, model.cls_batch = task, cls_batch
    inputs, samples = fake_batch(model.segmentor, SIZE)
    losses = model.loss(inputs, samples)
    model.parse_losses(losses)[0].backward()
    return {model.gates.group_names[k]: v.grad
            for k, v in model.gates.scores.items()}


def _nonzero(grad):
    return grad is not None and bool(grad.abs().sum() > 0)


def test_backbone_scores_learn_from_both_tasks_heads_from_one(small_dense):
    model = _wrap(small_dense).train()
    images = [torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
              for _ in range(2)]
    cls_batch = dict(inputs=images, label=[3, 7])
    seg = _grads(model, 'seg')
    cls = _grads(model, 'cls', cls_batch)
    backbone = [n for n in seg if n.startswith('backbone.')]
    heads = [n for n in seg if not n.startswith('backbone.')]
    assert backbone and heads
    assert all(_nonzero(seg[n]) for n in seg)
    assert all(_nonzero(cls[n]) for n in backbone)
    assert not any(_nonzero(cls[n]) for n in heads)
    # Only the scores learn; the network's weights are frozen.
    assert all(p.grad is None for p in model.segmentor.parameters())


def test_folding_the_scores_keeps_the_outputs(small_dense):
    model = _wrap(small_dense).eval()
    gen = torch.Generator().manual_seed(1)
    for score in model.gates.scores.values():
        score.data = torch.randn(score.shape, generator=gen)
    inputs = torch.randn(2, 3, SIZE, SIZE, generator=gen)
    with torch.no_grad():
        gated = forward_all_heads(model.segmentor, inputs)
        plain = copy.deepcopy(model.segmentor)  # hooks stay inert on copies
        ungated = forward_all_heads(plain, inputs)
        model.finish_search()
        model.gates.fold_into(model.segmentor)
        folded = forward_all_heads(model.segmentor, inputs)
    assert not torch.allclose(gated[0], ungated[0], atol=1e-3)
    for before, after in zip(gated, folded):
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_every_gate_scales_one_norm_output(small_dense):
    model = _wrap(small_dense)
    # Residual streams share one score vector across all their BN layers.
    layers = {n for n, entries in model.gates.layers.items()
              if len({k for k, _, _ in entries}) == 1}
    assert 'backbone.layer1.0.bn2' in layers
    assert 'decode_head.conv_seg' not in model.gates.layers
    stream = [n for n, entries in model.gates.layers.items()
              if entries[0][0] == model.gates.layers[
                  'backbone.layer1.1.bn2'][0][0]]
    assert len(stream) > 1


def test_label_free_targets_are_the_dense_predictions(small_dense):
    model = _wrap(small_dense).train()
    model.task = 'cls'
    inputs, samples = fake_batch(model.segmentor, SIZE)
    # Unchanged scores: the student is the teacher.
    assert model.loss(inputs, samples)['loss_cls'].abs() < 1e-6
    for score in model.gates.scores.values():
        score.data.mul_(0.5)
    assert model.loss(inputs, samples)['loss_cls'] > 1e-4


def test_trained_weights_keep_a_frozen_teacher(small_dense):
    model = _wrap(small_dense, freeze_weights=False).train()
    assert all(p.requires_grad for p in model.segmentor.parameters())
    model.task = 'cls'
    inputs, samples = fake_batch(model.segmentor, SIZE)
    model.loss(inputs, samples)
    teacher = model._teacher[0]
    assert 'teacher' not in ''.join(model.state_dict())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_loads_torchvision_and_mmpretrain_classifiers(small_dense, tmp_path):
    model = _wrap(small_dense)
    layer = model.classifier
    weight = torch.randn_like(layer.weight)
    bias = torch.randn_like(layer.bias)
    torch.save({'fc.weight': weight, 'fc.bias': bias,
                'conv1.weight': torch.zeros(1)}, tmp_path / 'tv.pth')
    torch.save({'state_dict': {'head.fc.weight': 2 * weight,
                               'head.fc.bias': bias}}, tmp_path / 'mmpt.pth')
    load_classifier(str(tmp_path / 'tv.pth'), layer)
    assert torch.equal(layer.weight, weight)
    load_classifier(str(tmp_path / 'mmpt.pth'), layer)
    assert torch.equal(layer.weight, 2 * weight)
    torch.save({'fc.weight': torch.zeros(10, 7), 'fc.bias': torch.zeros(10)},
               tmp_path / 'other.pth')
    with pytest.raises(PruneError, match='num_classes'):
        load_classifier(str(tmp_path / 'other.pth'), layer)
    torch.save({'backbone.x': torch.zeros(1)}, tmp_path / 'none.pth')
    with pytest.raises(PruneError, match='no classifier found'):
        load_classifier(str(tmp_path / 'none.pth'), layer)


def test_loads_a_plain_segmentor_checkpoint(small_dense):
    model = _wrap(small_dense)
    state = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v
             for k, v in small_dense.state_dict().items()}
    model.load_state_dict(state, strict=False)
    assert torch.equal(model.segmentor.backbone.stem[0].weight,
                       state['backbone.stem.0.weight'])


def test_val_and_test_steps_are_the_segmentors(small_dense):
    from tests.helpers import data_batch
    model = _wrap(small_dense).eval()
    batch = data_batch(*fake_batch(model.segmentor, SIZE))
    for step in ('val_step', 'test_step'):
        ours = getattr(model, step)(copy.deepcopy(batch))
        theirs = getattr(small_dense, step)(copy.deepcopy(batch))
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data)
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
