from .redundancy import (RedundancyStatistics, batch_detail,
                         batch_redundancy)

__all__ = ['RedundancyStatistics', 'batch_detail', 'batch_redundancy']
