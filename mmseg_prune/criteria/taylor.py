"""First-order Taylor importance (Molchanov et al., CVPR 2019)."""
import torch
import torch_pruning as tp
from mmengine.utils import ProgressBar

from ..registry import PRUNING_CRITERIA
from ..utils.errors import PruneError
from .base import BaseCriterion, group_importance


@PRUNING_CRITERIA.register_module()
class TaylorCriterion(BaseCriterion):
    """|weight x gradient| of the segmentation loss, summed over calibration
    batches and averaged over each group (torch-pruning's
    ``GroupTaylorImportance``).

    The model is run in eval mode, so BN running statistics stay as they
    were; gradients are accumulated and cleared afterwards.
    """

    requires_data = True

    def __init__(self):
        self.importance = tp.importance.GroupTaylorImportance(normalizer=None)

    def prepare(self, graph, batches):
        if batches is None:
            raise PruneError(
                'the taylor criterion needs data: give the config a '
                'train_dataloader whose data_root exists (--data-root DIR)')
        model = graph.model
        model.eval()
        model.zero_grad()
        progress = ProgressBar(len(batches))
        with torch.enable_grad():
            for data in batches:
                data = model.data_preprocessor(data, True)
                losses = model.loss(data['inputs'], data['data_samples'])
                loss, _ = model.parse_losses(losses)
                loss.backward()
                progress.update()

    def score_group(self, graph, group):
        return group_importance(self.importance, group)

    def __call__(self, graph, batches=None):
        try:
            return super().__call__(graph, batches)
        finally:
            graph.model.zero_grad(set_to_none=True)
