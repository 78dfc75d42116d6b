"""Run one of mmseg's own tools with the plugin imported."""
import os.path as osp
import runpy
import sys


def run_mmseg_tool(name: str) -> None:
    """Execute ``mmseg/.mim/tools/<name>`` as ``__main__``.

    mmseg ships its tools inside its wheel; running them from here keeps their
    arguments and behaviour exactly, with mmseg-prune registered first (for
    configs that do not list it in ``custom_imports``).
    """
    import mmseg

    import mmseg_prune  # noqa: F401 - registers the plugin
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', name)
    sys.argv[0] = path
    runpy.run_path(path, run_name='__main__')
