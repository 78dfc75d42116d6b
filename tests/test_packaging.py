"""requirements.txt is the one dependency list: the Makefile installs each
entry and setup.py requires the ones pip can resolve."""
import os.path as osp
import re
import runpy

import setuptools

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _requirements():
    with open(osp.join(ROOT, 'requirements.txt')) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


def test_the_makefile_installs_every_requirement():
    with open(osp.join(ROOT, 'Makefile')) as f:
        installs = ' '.join(line for line in f if 'pip install' in line
                            or '$(PIP) install' in line)
    missing = [r for r in _requirements()
               if not re.search(rf'(^|[\s\'"]){re.escape(r)}($|[\s\'"])',
                                installs)]
    assert missing == []


def test_setup_requires_what_pip_can_resolve(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(osp.join(ROOT, 'setup.py'))
    assert seen['install_requires'] == [
        r for r in _requirements()
        if not r.startswith(('torch==', 'mmcv==', 'pytest'))]
    assert seen['python_requires'] == '>=3.9'
