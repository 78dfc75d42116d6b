"""Tables printed by the tools."""
from prettytable import PrettyTable

from ..utils.cli import human


def summary_table(report: dict) -> PrettyTable:
    """Dense vs pruned FLOPs (MACs) and parameters."""
    h, w = report['input_shape']
    table = PrettyTable(['', 'dense', 'pruned', 'pruned / dense'])
    table.title = (f'{report["criterion"]}: FLOPs (MACs) and params at input '
                   f'1x3x{h}x{w}')
    for key, label in (('flops', 'FLOPs (MACs)'), ('params', 'Params')):
        dense, pruned = report['dense'][key], report['pruned'][key]
        table.add_row([label, human(dense), human(pruned),
                       f'{pruned / dense:.3f}'])
    target = report['flops_reduction']
    table.add_row([
        'FLOPs reduction', '', f'{report["achieved_reduction"]:.2%}',
        '' if target is None else f'target {target:.2%}'
    ])
    latency = report.get('latency')
    if latency:
        table.add_row([
            f'Latency ({latency["device"]}, ms)', f'{latency["dense_ms"]:.1f}',
            f'{latency["pruned_ms"]:.1f}',
            f'{latency["pruned_ms"] / latency["dense_ms"]:.3f}'
        ])
        table.add_row([
            'Latency reduction', '', f'{latency["reduction"]:.2%}',
            f'target {report["latency_reduction"]:.2%}'
        ])
    return table


def layers_table(layers: dict) -> PrettyTable:
    """Output channels kept per pruned layer."""
    table = PrettyTable(['layer', 'kept', 'total', 'kept %'])
    table.title = 'Pruned layers (output channels)'
    table.align['layer'] = 'l'
    for name, (kept, total) in layers.items():
        if kept != total:
            table.add_row([name, kept, total, f'{kept / total:.0%}'])
    return table


def metrics_table(evaluation: dict) -> PrettyTable:
    """Test-set metrics of the dense and the pruned model."""
    keys = sorted(evaluation['dense'])
    table = PrettyTable(['', *keys])
    table.title = 'Test set'
    for name in ('dense', 'pruned'):
        table.add_row([name, *(f'{evaluation[name].get(k, float("nan")):.2f}'
                               for k in keys)])
    return table
