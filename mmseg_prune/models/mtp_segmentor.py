"""MTP's pruner wrapper: a segmentor whose channel scores two tasks learn.

Multi-Task Pruning (Chen et al., ICME 2022) treats a segmentation network as
implicitly multi-task: its backbone was pre-trained on ImageNet
classification and then trained for segmentation, so each filter's
importance is decided by both tasks. :class:`MTPSegmentor` wraps a segmentor
with a learnable score per channel (:class:`ChannelGates`) and a
classification branch on the backbone's last stage (global average pooling
and the pre-trained classifier). Training steps minimise

    L_seg + alpha * L_cls + lambda * sum |score|

one task per step: :class:`~mmseg_prune.hooks.MTPHook` sets :attr:`task`
before every iteration. Backbone scores thus receive both tasks' gradients,
head scores only the segmentation task's. Validation and test steps are
those of the wrapped segmentor.
"""
import copy
import warnings
from typing import Dict, Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmseg.registry import MODELS

from ..utils.errors import PruneError
from .channel_gates import ChannelGates
from .pruned_segmentor import strip_pretrained

#: Where classification checkpoints keep their classifier: mmpretrain
#: (``head.fc``), torchvision ResNets (``fc``), others (``classifier``).
CLASSIFIER_PREFIXES = ('head.fc.', 'fc.', 'classifier.', 'head.')


def load_classifier(path: str, layer: nn.Linear) -> None:
    """Load the final linear layer of a classification checkpoint.

    ``path`` is a file or a URL (MMEngine's checkpoint loaders). The state
    dict may sit under ``state_dict`` or ``model`` and carry a
    ``module.`` prefix; the first of :data:`CLASSIFIER_PREFIXES` that has a
    ``weight`` and ``bias`` is used.
    """
    from mmengine.runner import CheckpointLoader
    try:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise PruneError(
            f'cannot read classifier checkpoint "{path}": '
            f'{type(exc).__name__}: {exc}; without internet, download it '
            'elsewhere and pass the local file as '
            'model.classifier.checkpoint') from exc
    state = ckpt.get('state_dict', ckpt.get('model', ckpt))
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state.items()}
    for prefix in CLASSIFIER_PREFIXES:
        weight, bias = state.get(prefix + 'weight'), state.get(prefix + 'bias')
        if weight is None or bias is None or weight.dim() != 2:
            continue
        if weight.shape != layer.weight.shape:
            raise PruneError(
                f'the classifier in "{path}" ({prefix}weight) has shape '
                f'{list(weight.shape)}, but the backbone gives '
                f'{layer.in_features} channels for {layer.out_features} '
                'classes; set classifier.num_classes or pass the checkpoint '
                'the backbone was pre-trained from')
        layer.weight.data.copy_(weight)
        layer.bias.data.copy_(bias)
        return
    raise PruneError(
        f'no classifier found in "{path}": looked for '
        f'{", ".join(p + "weight" for p in CLASSIFIER_PREFIXES)}; pass an '
        'mmpretrain or torchvision classification checkpoint')


@MODELS.register_module()
class MTPSegmentor(BaseModel):
    """A segmentor with learnable channel scores and a classification branch.

    Args:
        segmentor (dict | nn.Module): The segmentor config (``pretrained``
            entries are dropped: the weights come from ``load_from``) or a
            built segmentor, which is then gated in place.
        classifier (dict): ``num_classes`` (default 1000) and ``checkpoint``,
            an mmpretrain- or torchvision-style classification checkpoint
            whose final linear layer the branch loads (see
            :func:`load_classifier`). Without a checkpoint the classifier is
            random and the classification task means little.
        alpha (float): Weight of the classification loss. Default: 1.
        sparsity (float): lambda, weight of the L1 norm of all scores.
            Default: 1e-4.
        temperature (float): Softening of the label-free soft targets.
            Default: 1.
        freeze_weights (bool): Learn only the scores, keeping the network's
            weights and its norm statistics fixed (the segmentor runs in eval
            mode); False trains the weights with both tasks too.
            Default: True.
        input_shape (Sequence[int], optional): (H, W) at which the channel
            groups are traced. Default: the preprocessor's size, else 256.
        ignore (Sequence[str]): Module patterns that get no scores.
        graph (SegmentorGraph, optional): Groups already traced on a model
            of the same architecture (Python use only).
        data_preprocessor (dict, optional): The segmentor's, when its config
            has none (MMEngine's runner passes the config's top-level one).
        init_cfg (dict, optional): Unused; for the registry.
    """

    def __init__(self, segmentor: Union[dict, nn.Module],
                 classifier: Optional[dict] = None, alpha: float = 1.0,
                 sparsity: float = 1e-4, temperature: float = 1.0,
                 freeze_weights: bool = True,
                 input_shape: Optional[Sequence[int]] = None,
                 ignore: Sequence[str] = (), graph=None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        from ..structure import SegmentorGraph, check_segmentor
        if isinstance(segmentor, dict):
            segmentor = dict(segmentor)
            if data_preprocessor is not None:
                segmentor.setdefault('data_preprocessor', data_preprocessor)
            segmentor = MODELS.build(strip_pretrained(segmentor))
        check_segmentor(segmentor)
        super().__init__(data_preprocessor=segmentor.data_preprocessor,
                         init_cfg=init_cfg)
        self.segmentor = segmentor
        self.alpha = alpha
        self.sparsity = sparsity
        self.temperature = temperature
        self.freeze_weights = freeze_weights
        if input_shape is None:
            input_shape = getattr(segmentor.data_preprocessor, 'size',
                                  None) or (256, 256)
        if graph is None:
            graph = SegmentorGraph(copy.deepcopy(segmentor), input_shape,
                                   ignore)
        self.gates = ChannelGates(graph, segmentor, ignore)
        with torch.no_grad():
            feature = self._last_stage(graph.model.backbone,
                                       graph.example_inputs())
        classifier = dict(classifier or {})
        unknown = set(classifier) - {'num_classes', 'checkpoint'}
        if unknown:
            raise PruneError(f'unknown classifier keys {sorted(unknown)}; '
                             'the keys are num_classes and checkpoint')
        self.classifier = nn.Linear(feature.shape[1],
                                    classifier.get('num_classes', 1000))
        if classifier.get('checkpoint'):
            load_classifier(classifier['checkpoint'], self.classifier)
        else:
            warnings.warn(
                'MTPSegmentor has no classifier.checkpoint: the '
                'classification branch is random, so the classification '
                'task guides the scores little; pass the ImageNet '
                'checkpoint the backbone was pre-trained from')
        self._register_load_state_dict_pre_hook(_accept_segmentor_keys)
        self._searching = True
        #: 'seg' or 'cls': the task of the next training step.
        self.task = 'seg'
        #: The classification batch of the next 'cls' step (None: label-free).
        self.cls_batch: Optional[dict] = None
        self._teacher = []  # a frozen backbone copy, outside the state dict
        self._trainable = [p for p in self.segmentor.parameters()
                           if p.requires_grad]
        if freeze_weights:
            for param in self._trainable + list(
                    self.classifier.parameters()):
                param.requires_grad_(False)

    @property
    def searching(self) -> bool:
        """Whether scores are still being learned."""
        return self._searching

    def train(self, mode: bool = True):
        super().train(mode)
        if self.searching and self.freeze_weights:
            self.segmentor.eval()  # fixed weights, fixed norm statistics
        return self

    # -- the two tasks -----------------------------------------------------
    @staticmethod
    def _last_stage(backbone: nn.Module, inputs: torch.Tensor):
        feats = backbone(inputs)
        return feats[-1] if isinstance(feats, (list, tuple)) else feats

    def classify(self, inputs: torch.Tensor,
                 backbone: Optional[nn.Module] = None) -> torch.Tensor:
        """Class logits: pooled last backbone stage, then the classifier."""
        feature = self._last_stage(backbone or self.segmentor.backbone,
                                   inputs)
        return self.classifier(feature.mean((2, 3)))

    def _teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The dense network's own predictions (label-free targets)."""
        backbone = None  # frozen weights: the dense network = no gates
        if not self.freeze_weights:  # weights move: keep them as they start
            if not self._teacher:
                teacher = copy.deepcopy(self.segmentor.backbone)
                teacher.eval()  # mmseg's ResNet.train returns None
                self._teacher.append(teacher.requires_grad_(False))
            backbone = self._teacher[0]
        self.gates.enabled = False
        try:
            with torch.no_grad():
                return self.classify(inputs, backbone)
        finally:
            self.gates.enabled = True

    def classification_loss(self, seg_inputs: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on :attr:`cls_batch`, or, without one, the KL
        divergence from the dense network's predictions on ``seg_inputs``.
        """
        if self.cls_batch is not None:
            data = self.data_preprocessor(
                dict(inputs=self.cls_batch['inputs']), False)
            labels = torch.as_tensor(self.cls_batch['label'],
                                     device=data['inputs'].device)
            return F.cross_entropy(self.classify(data['inputs']), labels)
        t = self.temperature
        target = F.softmax(self._teacher_logits(seg_inputs) / t, dim=1)
        log_prob = F.log_softmax(self.classify(seg_inputs) / t, dim=1)
        return F.kl_div(log_prob, target, reduction='batchmean') * t * t

    def loss(self, inputs: torch.Tensor, data_samples) -> Dict:
        """The loss of the current :attr:`task`, plus the sparsity term."""
        if not self.searching:
            return self.segmentor.loss(inputs, data_samples)
        self.gates.attach(self.segmentor)
        if self.task == 'seg':
            losses = self.segmentor.loss(inputs, data_samples)
        elif self.task == 'cls':
            losses = dict(loss_cls=self.alpha *
                          self.classification_loss(inputs))
        else:
            raise PruneError(f'MTPSegmentor.task must be "seg" or "cls", '
                             f'got {self.task!r}')
        losses['loss_sparsity'] = self.sparsity * self.gates.sparsity()
        return losses

    def forward(self, inputs: torch.Tensor, data_samples=None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if self.searching:
            self.gates.attach(self.segmentor)
        return self.segmentor(inputs, data_samples, mode)

    # -- ending the search ---------------------------------------------------
    def finish_search(self) -> None:
        """Stop gating and learning scores; the segmentor trains as usual.

        Call after the scores were folded into the weights (see
        :meth:`ChannelGates.fold_into`).
        """
        self.gates.remove()
        self.gates.requires_grad_(False)
        self.classifier.requires_grad_(False)
        for param in self._trainable:
            param.requires_grad_(True)
        self._teacher.clear()
        self._searching = False
        self.train(self.training)

    def segmentor_state_dict(self, state_dict: dict) -> dict:
        """The segmentor's part of this wrapper's ``state_dict``, keyed as
        a plain segmentor's."""
        head = 'segmentor.'
        return type(state_dict)((k[len(head):], v)
                                for k, v in state_dict.items()
                                if k.startswith(head))


def task_at(iteration: int, period: dict) -> str:
    """The task of ``iteration`` in a cycle of ``period['seg']``
    segmentation steps followed by ``period['cls']`` classification steps.
    """
    seg, cls = period['seg'], period['cls']
    return 'seg' if iteration % (seg + cls) < seg else 'cls'


def check_period(period: dict) -> dict:
    """``period`` with both counts, or a clear error."""
    period = {**dict(seg=1, cls=1), **(period or {})}
    if set(period) != {'seg', 'cls'} or not all(
            isinstance(v, int) and v >= 0 for v in period.values()) or \
            period['seg'] + period['cls'] == 0:
        raise PruneError(f'the MTP period must be dict(seg=S, cls=C) with '
                         f'counts >= 0, not both 0; got {period}')
    return period


def prepare_step(model: 'MTPSegmentor', iteration: int, period: dict,
                 cls_batches: Optional[Iterator]) -> None:
    """Set the task of ``model``'s next training step and its
    classification batch (None in the label-free mode)."""
    model.task = task_at(iteration, period)
    model.cls_batch = next(cls_batches) if (
        model.task == 'cls' and cls_batches is not None) else None


def mtp_wrapper(model: nn.Module,
                required_by: Optional[str] = None) -> Optional[MTPSegmentor]:
    """The :class:`MTPSegmentor` a runner trains (inside a DDP wrapper or
    not), or None when it trains something else.

    Args:
        model (nn.Module): The model the runner trains.
        required_by (str, optional): Who needs the wrapper: without it the
            error names them instead of returning None.
    """
    from mmengine.model import is_model_wrapper
    model = model.module if is_model_wrapper(model) else model
    if isinstance(model, MTPSegmentor):
        return model
    if required_by is not None:
        raise PruneError(
            f'{required_by} needs model=dict(type="MTPSegmentor", '
            f'segmentor=...) in the config; the model is a '
            f'{type(model).__name__}')
    return None


def _accept_segmentor_keys(state_dict, prefix, *args) -> None:
    """Load a plain segmentor checkpoint (the dense model's ``load_from``,
    or a checkpoint written after the search) into the wrapper."""
    head = prefix + 'segmentor.'
    if any(k.startswith(head) for k in state_dict):
        return
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[head + key[len(prefix):]] = state_dict.pop(key)
