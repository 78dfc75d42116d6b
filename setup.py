import os.path as osp

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
version = {}
with open(osp.join(here, 'mmseg_prune', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='mmseg-prune',
    version=version['__version__'],
    description='Structured channel pruning (SIRFP, MTP and baselines) for '
    'MMSegmentation 1.x',
    long_description=open(osp.join(here, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmseg_prune', 'mmseg_prune.*']),
    python_requires='>=3.8',
    # torch and mmcv are not listed: pip would resolve a CUDA torch and
    # cannot build mmcv without --no-build-isolation. The Makefile installs
    # both first (see README).
    install_requires=[
        'mmengine>=0.10.0,<1.0',
        'mmsegmentation>=1.2.0,<1.3',
        'torch-pruning>=1.6.0',
        'numpy',
        'prettytable',
        'opencv-python',
        'pillow',
    ],
    extras_require=dict(tests=['pytest']),
    license='Apache-2.0',
)
