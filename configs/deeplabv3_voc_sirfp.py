# SIRFP (Wu et al., AAAI 2025) on DeepLabV3 R50-D8, VOC 2012 aug (mmseg's
# model zoo): 2x fewer FLOPs (MACs) at 512x512, one shot from a trained
# checkpoint, then fine-tuning with the zoo's schedule.
#
#   python tools/prune.py configs/deeplabv3_voc_sirfp.py --checkpoint DENSE.pth
#   python tools/train.py work_dirs/deeplabv3_voc_sirfp/pruned_config.py
#   # or both in one command, with evaluation of dense and pruned:
#   python tools/prune.py configs/deeplabv3_voc_sirfp.py \
#       --checkpoint DENSE.pth --finetune 20000 --eval
#
# Follows the official code's one-shot choices: statistics on the BN outputs,
# score beta*E - R with beta 0.4 in the backbone and 0 in the head, the
# diagonal in the row sums, backbone and head cut at the same quantile of raw
# scores, at least 2% of every layer kept, and the official code's
# never-pruned layers (ASPP projection, the last residual stream, the
# auxiliary head). Departs from it: statistics are a running mean over
# `calibration_batches` batches of the train set (the official code keeps an
# EMA over its whole first training stage: see configs/sirfp/ for that
# recipe inside one training run), and fine-tuning is mmseg's plain
# cross-entropy schedule, without DCFP's class-balanced resampling and gsrl
# loss.
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

pruning = dict(
    criterion=dict(
        type='SIRFPCriterion',
        backbone_beta=0.4,
        head_beta=0.0,
        include_diagonal=True),
    flops_reduction=0.5,
    input_shape=(512, 512),
    calibration_batches=64,
    ignore=[
        'decode_head.bottleneck.conv',  # official: aspp.bn1
        'backbone.layer4.2.conv3',  # official: backbone.layer4.2.bn3
        'auxiliary_head.*',  # official: conv_deepsup
    ],
    budget=dict(mode='split', normalizer=None, min_keep=0.02))
