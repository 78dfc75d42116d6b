"""Pictures of a pruning result (matplotlib, which mmseg installs)."""
from typing import Dict, Sequence


def plot_kept_share(ax, layers: Dict[str, Sequence[int]], label: str,
                    **kwargs) -> None:
    """Kept share of output channels per layer, in model order.

    Args:
        ax: A matplotlib axes.
        layers (dict[str, [kept, total]]): As in ``pruning_report.json``.
        label (str): Legend entry.
    """
    names = list(layers)
    shares = [kept / total for kept, total in layers.values()]
    ax.plot(range(len(names)), shares, marker='.', linewidth=1,
            label=label, **kwargs)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel('layer (model order)')
    ax.set_ylabel('kept share of output channels')
    ax.grid(alpha=0.3)


def stage_of(name: str) -> str:
    """The part of the model a layer belongs to: ``backbone.layer2``,
    ``decode_head``..."""
    parts = name.split('.')
    if parts[0] == 'backbone' and len(parts) > 1:
        return '.'.join(parts[:2])
    return parts[0]


def write_report_figure(path: str, report: dict, stages: Dict[str, list]):
    """``pruning_report.png``: kept share per layer, and FLOPs per stage
    dense vs pruned.

    Args:
        path (str): Output PNG.
        report (dict): The ``pruning_report.json`` content.
        stages (dict[str, (dense, pruned)]): FLOPs per stage.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    plot_kept_share(axes[0], report['layers'], report['criterion'])
    axes[0].set_title(f'{report["criterion"]}: '
                      f'{report["achieved_reduction"]:.1%} of FLOPs removed')
    names = list(stages)
    x = range(len(names))
    axes[1].bar([i - 0.2 for i in x], [stages[n][0] / 1e9 for n in names],
                width=0.4, label='dense')
    axes[1].bar([i + 0.2 for i in x], [stages[n][1] / 1e9 for n in names],
                width=0.4, label='pruned')
    axes[1].set_xticks(list(x))
    axes[1].set_xticklabels(names, rotation=30, ha='right', fontsize=8)
    axes[1].set_ylabel('GFLOPs (MACs)')
    axes[1].set_title('FLOPs per stage at 1x3x{}x{}'.format(
        *report['input_shape']))
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
