from .architecture import (apply_architecture, decode_architecture,
                           encode_architecture, extract_architecture)
from .attention import (SplitHeadAttention, has_split_attention,
                        split_attention)
from .graph import (ChannelGroup, GroupMember, SegmentorGraph,
                    auxiliary_heads, check_segmentor, decode_outputs,
                    forward_all_heads, inference_forward)
from .layer_rules import output_layers, register_layer_pruner

__all__ = [
    'apply_architecture', 'decode_architecture', 'encode_architecture',
    'extract_architecture', 'ChannelGroup', 'GroupMember', 'SegmentorGraph',
    'auxiliary_heads', 'check_segmentor', 'decode_outputs',
    'forward_all_heads', 'inference_forward', 'output_layers',
    'register_layer_pruner', 'SplitHeadAttention', 'has_split_attention',
    'split_attention'
]
