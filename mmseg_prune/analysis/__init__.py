from .complexity import (Complexity, InferenceForward, count_complexity,
                         default_input_shape, inference_params)
from .latency_table import LatencyTable, LayerCall, layer_calls
from .latency import (Latency, LatencyTimer, busy_cores, check_quiet,
                      measure_latency, paired_speedup, runs_to_span,
                      segmentor_forward, time_interleaved)

__all__ = [
    'Complexity', 'InferenceForward', 'count_complexity',
    'default_input_shape', 'inference_params', 'Latency', 'busy_cores',
    'check_quiet', 'measure_latency', 'paired_speedup', 'runs_to_span',
    'segmentor_forward', 'time_interleaved',
    'LatencyTable', 'LatencyTimer', 'LayerCall', 'layer_calls'
]
