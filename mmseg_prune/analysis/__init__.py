from .complexity import (Complexity, InferenceForward, count_complexity,
                         inference_params, measure_latency)

__all__ = [
    'Complexity', 'InferenceForward', 'count_complexity', 'inference_params',
    'measure_latency'
]
