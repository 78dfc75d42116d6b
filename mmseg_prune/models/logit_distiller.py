"""Logit distillation from a frozen dense teacher into a pruned student.

MMRazor fine-tunes pruned models this way. :class:`LogitDistiller` hooks a
segmentor so that every training forward (``mode='loss'``) adds

    loss_kd = weight * T**2 * KL(softmax(t / T) || softmax(s / T))

averaged over pixels, where ``s`` and ``t`` are the student's and the
teacher's decode-head logits on the same (preprocessed) batch. The student's
module names and state dict are untouched: its checkpoints stay plain
segmentor checkpoints.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..structure.graph import decode_outputs
from ..utils.errors import PruneError


def _classifier(segmentor: nn.Module) -> nn.Module:
    """The last decode head's classifier, whose output is the logits
    (heads call their own ``forward`` directly, so only the classifier's
    call can be hooked)."""
    heads = segmentor.decode_head
    head = heads[-1] if isinstance(heads, nn.ModuleList) else heads
    classifier = getattr(head, 'conv_seg', None)
    if not isinstance(classifier, nn.Module):
        raise PruneError(
            f'distillation needs a decode head with a conv_seg classifier; '
            f'{type(head).__name__} has none')
    return classifier


def decode_logits(segmentor: nn.Module, inputs: torch.Tensor):
    """The last decode head's logits (before resizing to the input); the
    auxiliary heads do not run."""
    return decode_outputs(segmentor, segmentor.extract_feat(inputs))[-1]


class LogitDistiller:
    """Adds a logit KD loss from ``teacher`` to a student's losses.

    Args:
        teacher (nn.Module): The dense segmentor; it is frozen and kept in
            eval mode.
        weight (float): Weight of the KD loss. Default: 1.
        temperature (float): T. Default: 1.
    """

    def __init__(self, teacher: nn.Module, weight: float = 1.0,
                 temperature: float = 1.0):
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight = weight
        self.temperature = temperature
        self._handles = []
        self._logits: Optional[torch.Tensor] = None
        self._active = False

    def attach(self, student: nn.Module) -> None:
        """Hook ``student``'s forward and its last classifier."""
        self.detach()
        self.teacher.to(next(student.parameters()).device)
        self._handles = [
            student.register_forward_pre_hook(self._start, with_kwargs=True),
            _classifier(student).register_forward_hook(self._capture),
            student.register_forward_hook(self._add_loss, with_kwargs=True),
        ]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _start(self, module, args, kwargs):
        self._active = kwargs.get('mode') == 'loss'
        self._logits = None

    def _capture(self, module, args, output):
        if self._active:
            self._logits = output

    def _add_loss(self, module, args, kwargs, output):
        if not self._active or self._logits is None:
            return output
        self._active = False
        inputs = kwargs.get('inputs', args[0] if args else None)
        with torch.no_grad():
            target = decode_logits(self.teacher, inputs)
        output = dict(output)
        output['loss_kd'] = self.loss(self._logits, target)
        return output

    def loss(self, student: torch.Tensor,
             teacher: torch.Tensor) -> torch.Tensor:
        """The KD loss of two logit maps of shape (N, K, H, W)."""
        t = self.temperature
        log_p = F.log_softmax(student / t, dim=1)
        q = F.softmax(teacher.to(student.dtype) / t, dim=1)
        kl = (q * (q.clamp_min(1e-12).log() - log_p)).sum(1).mean()
        return self.weight * t * t * kl
