"""Fine-tune with logit distillation from the dense model."""
from typing import Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ..models import LogitDistiller, build_segmentor, trained_segmentor


@HOOKS.register_module()
class DistillationHook(Hook):
    """Add a logit KD loss from a frozen dense teacher to every training
    step (see :class:`~mmseg_prune.models.logit_distiller.LogitDistiller`).

    Works beside :class:`PruningHook`: the student is pruned in place, so
    the distillation carries on through every pruning step.

    Args:
        teacher (dict): The teacher's model config (the dense model).
        checkpoint (str): The teacher's weights.
        weight (float): Weight of the KD loss. Default: 1.
        temperature (float): Softening of both distributions. Default: 1.
    """

    priority = 'LOW'

    def __init__(self, teacher: dict, checkpoint: str, weight: float = 1.0,
                 temperature: float = 1.0):
        self.teacher = teacher
        self.checkpoint = checkpoint
        self.weight = weight
        self.temperature = temperature
        self.distiller: Optional[LogitDistiller] = None

    def before_train(self, runner) -> None:
        teacher = build_segmentor(
            Config(dict(model=self.teacher,
                        default_scope=runner.cfg.get('default_scope',
                                                     'mmseg'))),
            self.checkpoint)
        self.distiller = LogitDistiller(teacher, self.weight,
                                        self.temperature)
        self.distiller.attach(trained_segmentor(runner.model))

    def after_train(self, runner) -> None:
        if self.distiller is not None:
            self.distiller.detach()
