"""requirements.txt is the one dependency list: the Makefile installs each
entry and setup.py requires the ones pip can resolve."""
import os.path as osp
import re
import runpy

import setuptools

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _requirements(extra=False):
    """The entries of requirements.txt: the required ones, or with
    ``extra`` the optional ones as (name of the extra, entry)."""
    entries = []
    with open(osp.join(ROOT, 'requirements.txt')) as f:
        for line in f:
            entry, _, comment = line.partition('#')
            if not entry.strip():
                continue
            name = comment.strip()[len('extra:'):].strip() \
                if comment.strip().startswith('extra:') else None
            if extra and name:
                entries.append((name, entry.strip()))
            elif not extra and not name:
                entries.append(entry.strip())
    return entries


def test_the_makefile_installs_every_requirement():
    with open(osp.join(ROOT, 'Makefile')) as f:
        installs = ' '.join(line for line in f if 'pip install' in line
                            or '$(PIP) install' in line)
    everything = _requirements() + [r for _, r in _requirements(extra=True)]
    missing = [r for r in everything
               if not re.search(rf'(^|[\s\'"]){re.escape(r)}($|[\s\'"])',
                                installs)]
    assert missing == []


def test_setup_requires_what_pip_can_resolve(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(osp.join(ROOT, 'setup.py'))
    assert seen['install_requires'] == [
        r for r in _requirements() if not r.startswith(('torch==', 'mmcv=='))]
    extras = {}
    for name, entry in _requirements(extra=True):
        extras.setdefault(name, []).append(entry)
    assert seen['extras_require'] == extras
    assert extras['deploy'] == ['onnx', 'onnxruntime']
    assert seen['python_requires'] == '>=3.9'
