"""What every command-line tool of the plugin shares."""
import argparse
import logging
import sys
from contextlib import contextmanager

from .errors import PruneError


def run_cli(main, argv=None) -> int:
    """Run ``main(argv)``; turn a :class:`PruneError` into one error line.

    Returns:
        int: The exit code: ``main``'s, 2 for a user error, 130 on Ctrl-C.
    """
    try:
        return main(argv) or 0
    except PruneError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A tool raises KeyboardInterrupt(message) once its outputs exist.
        done = exc.args[0] if exc.args else 'nothing was written'
        print(f'interrupted; {done}', file=sys.stderr)
        return 130


class CfgOptionsAction(argparse.Action):
    """``--cfg-options KEY=VALUE ...`` as MMEngine's ``DictAction`` parses
    it, with one clear error for an item that is not ``KEY=VALUE``."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, sep, value = item.partition('=')
            if not sep or not key:
                raise PruneError(
                    f'--cfg-options takes KEY=VALUE items, got "{item}"; '
                    'e.g. --cfg-options pruning.flops_reduction=0.5')
            try:
                options[key] = DictAction._parse_iterable(value)
            except Exception as exc:  # noqa: BLE001 - reported to the user
                raise PruneError(f'--cfg-options cannot read the value of '
                                 f'"{item}": {exc}') from exc
        setattr(namespace, self.dest, options)


@contextmanager
def quiet_logger(level=logging.WARNING):
    """Silence MMEngine's INFO lines (weight init reports) for a while."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def human(number: float, unit: str = '') -> str:
    """``270053683200`` -> ``'270.05 G'``."""
    for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(number) >= factor:
            return f'{number / factor:.2f} {prefix}{unit}'
    return f'{number:.0f} {unit}'.strip()
