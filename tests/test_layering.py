"""The package's levels import only downward (the README's Layout)."""
import ast
import os.path as osp
from pathlib import Path

import pytest

import mmseg_prune

PACKAGE = Path(osp.dirname(mmseg_prune.__file__))
#: Lowest first; a module may import its own folder and lower levels.
LEVELS = [
    {'utils', 'registry', 'version', 'testing'},
    {'structure'},
    {'analysis', 'datasets'},
    {'models'},
    {'criteria'},
    {'pruner'},
    {'hooks'},
    {'apis'},
]
LEVEL = {name: i for i, names in enumerate(LEVELS) for name in names}


def _part(path: Path, root: Path) -> str:
    """The top-level folder or module of the package that ``path`` is in."""
    return path.relative_to(root).parts[0].removesuffix('.py')


def _imported_parts(path: Path, root: Path):
    """(line, part) of every package import in ``path``, function-level
    imports included."""
    tree = ast.parse(path.read_text())
    package = path.parent.relative_to(root.parent).parts
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = list(base) + (node.module.split('.')
                                       if node.module else [])
                # ``from . import x`` in the package root names x
                if len(target) == 1:
                    target += [alias.name for alias in node.names][:1]
            elif (node.module or '').startswith('mmseg_prune'):
                target = node.module.split('.')
            else:
                continue
            yield node.lineno, target[1] if len(target) > 1 else None
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'mmseg_prune':
                    yield node.lineno, parts[1] if len(parts) > 1 else None


def upward_imports(root: Path = PACKAGE):
    found = []
    for path in sorted(root.rglob('*.py')):
        if path.parent == root and path.name == '__init__.py':
            continue  # the package root registers everything
        source = _part(path, root)
        for line, target in _imported_parts(path, root):
            if target is None or target == source:
                continue
            if LEVEL[target] >= LEVEL[source]:
                found.append(f'{path.relative_to(root)}:{line} imports '
                             f'{target} (level {LEVEL[target]}) from '
                             f'{source} (level {LEVEL[source]})')
    return found


def test_every_part_has_a_level():
    parts = {_part(p, PACKAGE) for p in PACKAGE.rglob('*.py')} - {'__init__'}
    assert parts == set(LEVEL)


def test_imports_run_only_downward():
    assert upward_imports() == []


def test_the_check_sees_function_level_imports(tmp_path):
    # A deliberate upward import inside a function must be reported.
    fake = tmp_path / 'mmseg_prune'
    (fake / 'criteria').mkdir(parents=True)
    (fake / 'apis').mkdir()
    (fake / 'criteria' / 'bad.py').write_text(
        'def f():\n    from ..apis.runner import evaluate\n')
    (fake / 'apis' / 'runner.py').write_text('from ..criteria import x\n')
    assert upward_imports(fake) == [
        'criteria/bad.py:2 imports apis (level 7) from criteria (level 4)'
    ]


@pytest.mark.parametrize('name', ['SIRFPCriterion', 'MTPCriterion'])
def test_hooks_name_no_criterion(name):
    for path in (PACKAGE / 'hooks').rglob('*.py'):
        assert name not in path.read_text(), path
