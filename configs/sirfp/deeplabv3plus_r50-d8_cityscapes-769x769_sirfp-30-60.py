# SIRFP's Cityscapes recipe (official scripts/cs/SIRFP_cs_dv3p.sh) on mmseg's
# DeepLabV3+ R50-D8, in ONE training run: train 4k iterations while
# collecting statistics, prune 30% of the FLOPs (MACs) with the edge score,
# train 8k more collecting the gradient-variant statistics, prune to 60% in
# all, fine-tune to 48k. FLOPs are counted at 512x512 as in the official code.
#
#   python tools/train.py configs/sirfp/deeplabv3plus_r50-d8_cityscapes-769x769_sirfp-30-60.py
#   # then, with the last checkpoint:
#   python tools/test.py work_dirs/<this config>/pruned_config.py \
#       work_dirs/<this config>/iter_48000.pth
#
# Same as official: 769x769 crops, batch 8 (4 GPUs x 2), SGD lr 1e-2,
# wd 5e-4, statistics EMA 0.999 on BN outputs, beta 0.4 backbone / 0 head,
# gradient variant 0.4*G - R for the second step, backbone and head cut at
# one quantile, at least 2% of each layer kept, official never-pruned layers.
# Departs: one poly schedule over the 48k iterations (official restarts it
# per stage, with a 1k warm-up and wd 1e-3 in stage 2); mmseg's plain
# cross-entropy (no class-balanced resampling, no gsrl loss); the second
# step's statistics are the gradient variant's, as the official COCO script
# collects them (the official Cityscapes script collects stage-2 statistics
# with `graph_edge_pruning`, which saves no gradient term, then prunes with
# the V2 pruner, which reads it: a KeyError).
_base_ = ['mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-769x769.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

max_iters = 48000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=4000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
custom_hooks = [
    dict(
        type='PruningHook',
        schedule=[
            dict(iter=4000, flops_reduction=0.3),
            dict(iter=12000, flops_reduction=0.6,
                 criterion=dict(type='SIRFPCriterion', gradient_weight=0.4)),
        ],
        criterion=dict(type='SIRFPCriterion', backbone_beta=0.4,
                       head_beta=0.0),
        input_shape=(512, 512),
        ignore=[
            'decode_head.bottleneck.conv',  # official: aspp.bn1
            'decode_head.c1_bottleneck.conv',  # official: decoder.bn1
            'backbone.layer4.2.conv3',  # official: backbone.layer4.2.bn3
            'auxiliary_head.*',  # official: conv_deepsup
        ],
        budget=dict(mode='split', normalizer=None, min_keep=0.02)),
]
