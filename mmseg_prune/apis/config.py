"""Loading configs and data roots the way the tools need them."""
import copy
import os.path as osp
from typing import Optional

from mmengine.config import Config

from ..utils.errors import PruneError

#: Pruning settings a config may carry as ``pruning = dict(...)``.
DEFAULT_PRUNING = dict(
    criterion='l1',
    flops_reduction=0.5,
    # A share of the latency measured on this device to remove instead
    # (FlopsBudget's cost='latency'); None: prune to flops_reduction.
    latency_reduction=None,
    input_shape=None,
    ignore=[],
    calibration_batches=8,
    # None: the criterion's default (SIRFP folds removed channels into the
    # next biases, as its official code does).
    bias_compensation=None,
    # mode and normalizer: the criterion's own defaults (SIRFP: its split
    # budget on raw scores), else FlopsBudget's (global, mean).
    budget=dict(min_keep=0.05, round_to=None, tolerance=None),
)


def resolve_config_path(config: str) -> str:
    """Path of a config file, or of a model-zoo config named ``mmseg::X``."""
    if config.startswith('mmseg::'):
        import mmseg
        path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs',
                        config[len('mmseg::'):])
        if not osp.isfile(path):
            raise PruneError(
                f'no model-zoo config named "{config}"; list them with '
                f'`ls {osp.dirname(osp.dirname(path))}`')
        return path
    if not osp.isfile(config):
        raise PruneError(f'config file "{config}" does not exist; pass a '
                         'config path or a model-zoo name such as '
                         'mmseg::deeplabv3/'
                         'deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py')
    return config


def load_config(config: str, cfg_options: Optional[dict] = None,
                data_root: Optional[str] = None) -> Config:
    """Load a config, apply ``--cfg-options`` and ``--data-root``.

    Args:
        config (str): Path or ``mmseg::`` model-zoo name.
        cfg_options (dict, optional): Overrides, as ``DictAction`` parses.
        data_root (str, optional): New data root of every dataset.

    Returns:
        Config: The config, with a complete ``pruning`` section.
    """
    path = resolve_config_path(config)
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # noqa: BLE001 - any parse error
        raise PruneError(f'cannot read config "{config}": '
                         f'{type(exc).__name__}: {exc}') from exc
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            raise PruneError(f'--cfg-options do not fit config "{config}": '
                             f'{type(exc).__name__}: {exc}') from exc
    if 'model' not in cfg:
        raise PruneError(f'config "{config}" has no model; pass an mmseg '
                         'segmentation config')
    if not isinstance(cfg.model, dict) or 'type' not in cfg.model:
        raise PruneError(f'the model of config "{config}" must be a dict '
                         f'with a type, got {cfg.model!r}')
    if data_root is not None:
        set_data_root(cfg, data_root)
    pruning = copy.deepcopy(DEFAULT_PRUNING)
    for key, value in (cfg.get('pruning') or {}).items():
        if key not in pruning:
            raise PruneError(
                f'unknown key pruning.{key} in config "{config}"; the keys '
                f'are {", ".join(DEFAULT_PRUNING)}')
        if key == 'budget':
            if not isinstance(value, dict):
                raise PruneError(f'pruning.budget must be a dict, got '
                                 f'{value!r}')
            pruning['budget'].update(value)
        else:
            pruning[key] = value  # a criterion may be a name or a dict
    check_pruning(pruning)
    cfg.pruning = pruning
    return cfg


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_pruning(pruning: dict) -> None:
    """Raise one clear error for a ``pruning`` setting of the wrong type."""
    checks = dict(
        criterion=(lambda v: isinstance(v, (str, dict)),
                   'a criterion name or dict(type=...)'),
        flops_reduction=(_is_number, 'a number in (0, 1), e.g. 0.5'),
        latency_reduction=(lambda v: v is None or _is_number(v),
                           'None or a number in (0, 1), e.g. 0.5'),
        input_shape=(lambda v: v is None or (
            isinstance(v, (list, tuple)) and len(v) == 2 and
            all(isinstance(d, int) and d > 0 for d in v)),
            'two positive ints (H, W) or None'),
        ignore=(lambda v: isinstance(v, (list, tuple)) and
                all(isinstance(p, str) for p in v),
                'a list of module name patterns'),
        calibration_batches=(lambda v: isinstance(v, int) and v >= 1,
                             'a positive int'),
        bias_compensation=(lambda v: v is None or isinstance(v, bool),
                           'True, False or None'),
    )
    for key, (valid, expected) in checks.items():
        if not valid(pruning[key]):
            raise PruneError(f'pruning.{key} must be {expected}, got '
                             f'{pruning[key]!r}')


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataset of ``cfg`` (concatenated ones too) to one root."""
    data_root = osp.abspath(data_root)

    def visit(node):
        if isinstance(node, dict):
            if 'data_root' in node:
                node['data_root'] = data_root
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    if 'data_root' in cfg:
        cfg.data_root = data_root
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) is not None:
            visit(cfg[key])


def dataset_roots(dataset_cfg) -> list:
    """Every ``data_root`` of a dataset config, nested ones included."""
    roots = []
    if isinstance(dataset_cfg, dict):
        if dataset_cfg.get('data_root') is not None:
            roots.append(dataset_cfg['data_root'])
        for value in dataset_cfg.values():
            roots += dataset_roots(value)
    elif isinstance(dataset_cfg, (list, tuple)):
        for value in dataset_cfg:
            roots += dataset_roots(value)
    return roots


#: How to get the datasets of mmseg's model zoo (dataset type -> steps).
DATASET_HINTS = {
    'PascalVOCDataset': (
        'VOC 2012 aug = VOCtrainval_11-May-2012.tar plus the SBD '
        'augmented masks (benchmark.tgz), converted with mmseg\'s '
        'tools/dataset_converters/voc_aug.py'),
    'CityscapesDataset': (
        'Cityscapes = leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip'
        ' from cityscapes-dataset.com, converted with mmseg\'s '
        'tools/dataset_converters/cityscapes.py'),
    'ADE20KDataset': 'ADE20K = ADEChallengeData2016.zip from MIT',
    'COCOStuffDataset': (
        'COCO-Stuff = the cocostuff-10k or 164k release, converted with '
        'mmseg\'s tools/dataset_converters/coco_stuff10k.py or '
        'coco_stuff164k.py'),
}


def _dataset_types(node) -> list:
    """Types of the dataset configs under ``node`` that have a data root."""
    if isinstance(node, dict):
        own = [node['type']] if 'data_root' in node and 'type' in node \
            else []
        return own + [t for v in node.values() for t in _dataset_types(v)]
    if isinstance(node, (list, tuple)):
        return [t for v in node for t in _dataset_types(v)]
    return []


def check_data(cfg: Config, split: str = 'train_dataloader') -> None:
    """Raise a clear error when a dataset root of ``split`` is missing."""
    loader = cfg.get(split)
    if loader is None:
        raise PruneError(f'the config has no {split}; this step needs data')
    for root in dataset_roots(loader):
        if not osp.isdir(root):
            hint = next((DATASET_HINTS[t] for t in _dataset_types(loader)
                         if t in DATASET_HINTS), 'the dataset')
            raise PruneError(
                f'dataset root "{root}" ({split}) does not exist. Get '
                f'{hint} (mmseg\'s docs/en/user_guides/2_dataset_prepare.md)'
                ' and pass --data-root DIR, or run on generated data: '
                'python tools/make_demo_data.py data/demo, then add '
                '--data-root data/demo')


def work_dir_for(config: str) -> str:
    """``work_dirs/<config name>``, as mmseg's tools name it."""
    name = osp.splitext(osp.basename(config.split('::')[-1]))[0]
    return osp.join('work_dirs', name)
