"""An optimizer constructor that keeps MTP's frozen weights in the
optimizer, so that they train once the search ends."""
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MTPOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` that also takes parameters
    with ``requires_grad=False``.

    With a ``paramwise_cfg`` MMEngine leaves frozen parameters out of the
    optimizer. MTP's search freezes the segmentor's weights and unfreezes
    them when it ends, in the same run: left out, they would never train.
    While frozen they get no gradient, so the optimizer skips them (weight
    decay and momentum included) until the search ends.
    """

    def __call__(self, model):
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for param in frozen:
            param.requires_grad_(True)
        try:
            return super().__call__(model)
        finally:
            for param in frozen:
                param.requires_grad_(False)
