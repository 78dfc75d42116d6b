"""Logit distillation: the KD term by hand, and inside training steps."""
import copy

import torch
import torch.nn.functional as F

from mmseg_prune.apis import prune_segmentor
from mmseg_prune.models import LogitDistiller
from mmseg_prune.models.logit_distiller import decode_logits

from tests.helpers import fake_batch


def test_loss_by_hand():
    student = torch.randn(2, 3, 4, 4)
    teacher = torch.randn(2, 3, 4, 4)
    t = 2.0
    p = torch.softmax(teacher / t, 1)
    q = torch.softmax(student / t, 1)
    expected = 0.5 * t * t * (p * (p / q).log()).sum(1).mean()
    distiller = LogitDistiller(torch.nn.Conv2d(1, 1, 1), weight=0.5,
                               temperature=t)
    torch.testing.assert_close(distiller.loss(student, teacher), expected)
    assert distiller.loss(teacher, teacher).abs() < 1e-6


def test_adds_the_teachers_kd_loss_to_training_steps(small_dense):
    teacher = copy.deepcopy(small_dense)
    student = prune_segmentor(copy.deepcopy(small_dense), 'l1', 0.5,
                              (64, 64)).model.train()
    inputs, samples = fake_batch(student)
    plain = student(inputs, samples, mode='loss')
    distiller = LogitDistiller(teacher, weight=2.0)
    distiller.attach(student)
    losses = student(inputs, samples, mode='loss')
    assert set(losses) == set(plain) | {'loss_kd'}
    with torch.no_grad():
        target = decode_logits(teacher, inputs)
        student.eval()
        own = decode_logits(student, inputs)
        student.train()
    assert target.shape == own.shape
    # Train-mode logits (batch statistics) against the frozen teacher's.
    loss = losses['loss_kd']
    assert loss.requires_grad and loss > 0
    loss.backward()
    assert student.decode_head.conv_seg.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    # Prediction and tensor modes get no KD term; detaching removes it.
    with torch.no_grad():
        assert isinstance(student(inputs, mode='tensor'), torch.Tensor)
    distiller.detach()
    assert set(student(inputs, samples, mode='loss')) == set(plain)


def test_student_equal_to_teacher_in_eval_gives_zero(small_dense):
    student = copy.deepcopy(small_dense).eval()
    distiller = LogitDistiller(copy.deepcopy(small_dense))
    distiller.attach(student)
    inputs, samples = fake_batch(student)
    with torch.no_grad():
        loss = student(inputs, samples, mode='loss')['loss_kd']
    assert loss.abs() < 1e-6
    assert F.kl_div is not None
