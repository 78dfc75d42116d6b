# DeepLabV3 R50-D8 on VOC 2012 aug (mmseg's model zoo), pruned by 50% of its
# FLOPs (MACs) at 512x512 with the L1 filter-norm criterion.
#
#   python tools/prune.py configs/baselines/deeplabv3_r50-d8_voc12aug_l1-50.py \
#       --checkpoint DENSE.pth
#   python tools/train.py work_dirs/deeplabv3_r50-d8_voc12aug_l1-50/pruned_config.py
#
# Every key of `pruning` is optional; these are the defaults but for the
# criterion. Any mmseg config gains pruning the same way: inherit it, import
# the plugin, add a `pruning` section.
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

pruning = dict(
    criterion='l1',  # random | l1 | bn_scale | fpgm | taylor | dict(type=...)
    flops_reduction=0.5,  # share of dense FLOPs (MACs) to remove
    latency_reduction=None,  # or a share of the measured latency (CPU, or
    # CUDA where present), as --latency-reduction sets
    input_shape=None,  # (H, W) to count at; None: the crop size
    ignore=[],  # fnmatch patterns of modules never to prune
    calibration_batches=8,  # train batches for data-driven criteria
    bias_compensation=None,  # fold removed channels into the next biases;
    # None: the criterion's default (SIRFP: True, others: False)
    budget=dict(
        mode='global',  # one threshold over all groups | 'uniform'
        normalizer='mean',  # per-group score normalisation: mean|max|rank
        min_keep=0.05,  # fewest channels per layer (fraction or count)
        round_to=None,  # keep multiples of this many channels
        tolerance=None,  # allowed gap to the target; None: 0.005 of the
        # FLOPs, 0.05 of the target latency
        cost='flops'))  # 'latency' with latency_reduction
