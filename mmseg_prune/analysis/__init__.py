from .complexity import (Complexity, InferenceForward, count_complexity,
                         default_input_shape, inference_params,
                         measure_latency)

__all__ = [
    'Complexity', 'InferenceForward', 'count_complexity',
    'default_input_shape', 'inference_params', 'measure_latency'
]
