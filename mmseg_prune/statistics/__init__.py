from .redundancy import (RedundancyStatistics, batch_detail,
                         batch_redundancy, batch_statistics)

__all__ = [
    'RedundancyStatistics', 'batch_detail', 'batch_redundancy',
    'batch_statistics'
]
