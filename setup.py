import os.path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
with open(osp.join(here, 'mmseg_prune', 'version.py')) as f:
    exec(f.read(), version)

# requirements.txt is the one list; entries marked `extra: NAME` are
# extras. torch and mmcv are not required here:
# pip would resolve a CUDA torch and cannot build mmcv without
# --no-build-isolation, so the Makefile installs both first (see README).
install_requires, extras_require = [], {}
with open(osp.join(here, 'requirements.txt')) as f:
    for line in f:
        requirement, _, comment = (part.strip() for part in
                                   line.partition('#'))
        if not requirement or requirement.startswith(('torch==', 'mmcv==')):
            continue
        if comment.startswith('extra:'):
            extra = comment[len('extra:'):].strip()
            extras_require.setdefault(extra, []).append(requirement)
        else:
            install_requires.append(requirement)

setup(
    name='mmseg-prune',
    version=version['__version__'],
    description='Structured channel pruning (SIRFP, MTP and baselines) for '
    'MMSegmentation 1.x',
    long_description=open(osp.join(here, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmseg_prune', 'mmseg_prune.*']),
    python_requires='>=3.9',  # math.lcm
    install_requires=install_requires,
    extras_require=extras_require,
    license='Apache-2.0',
)
