"""What the tools and users call: configs, pruning, saving, fine-tuning.

Nothing inside the package imports this level; it re-exports the engine's
entry points so that a user needs one import.
"""
from ..analysis import default_input_shape
from ..models import build_segmentor, dense_architecture, load_weights
from ..models import pruned_config
from ..pruner import PruneResult, build_criterion, prune_segmentor
from .config import (check_data, load_config, resolve_config_path,
                     set_data_root, work_dir_for)
from .export import (SegmentationLogits, export_onnx, onnx_max_difference,
                     onnxruntime_session)
from .prune import build_report, save_pruned

__all__ = [
    'check_data', 'default_input_shape', 'load_config', 'resolve_config_path',
    'set_data_root', 'work_dir_for', 'build_segmentor', 'dense_architecture',
    'load_weights', 'PruneResult', 'build_criterion', 'build_report',
    'prune_segmentor', 'pruned_config', 'save_pruned', 'SegmentationLogits',
    'export_onnx', 'onnx_max_difference', 'onnxruntime_session'
]
