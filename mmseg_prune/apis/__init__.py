from .config import (check_data, default_input_shape, load_config,
                     resolve_config_path, set_data_root, work_dir_for)
from .model import build_segmentor, dense_architecture, load_weights
from .prune import (PruneResult, build_criterion, build_report,
                    prune_segmentor, pruned_config, save_pruned)

__all__ = [
    'check_data', 'default_input_shape', 'load_config', 'resolve_config_path',
    'set_data_root', 'work_dir_for', 'build_segmentor', 'dense_architecture',
    'load_weights', 'PruneResult', 'build_criterion', 'build_report',
    'prune_segmentor', 'pruned_config', 'save_pruned'
]
