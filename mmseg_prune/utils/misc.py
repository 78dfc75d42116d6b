"""Small helpers with no better home."""
import itertools
from typing import Iterator


def endless(loader) -> Iterator:
    """Batches of ``loader``, epoch after epoch."""
    for epoch in itertools.count():
        sampler = getattr(loader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
        yield from loader
