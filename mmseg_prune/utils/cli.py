"""What every command-line tool of the plugin shares."""
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
    except KeyboardInterrupt:
        print('interrupted; nothing was written', file=sys.stderr)
        return 130


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
