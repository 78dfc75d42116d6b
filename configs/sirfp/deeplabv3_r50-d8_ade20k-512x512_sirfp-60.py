# SIRFP's ADE20K recipe (official scripts/ade/finetune_simiflex_graphedge.sh)
# on mmseg's DeepLabV3 R50-D8, in ONE training run: train 16k iterations
# while collecting statistics, prune 60% of the FLOPs (MACs) in one shot with
# the edge score, fine-tune to 160k (official: 144k after pruning).
#
#   python tools/train.py configs/sirfp/deeplabv3_r50-d8_ade20k-512x512_sirfp-60.py
#
# Same as official: 512x512 crops, batch 16, SGD lr 1e-2, statistics EMA
# 0.999 on BN outputs, beta 0.4 backbone / 0 head, backbone and head cut at
# one quantile, at least 2% of each layer kept, official never-pruned layers,
# FLOPs at 512x512. Departs: one poly schedule over 160k (official restarts it
# after pruning, with a 2k warm-up and wd 5e-4; mmseg's zoo uses wd 5e-4
# throughout); mmseg's plain cross-entropy (no class-balanced resampling, no
# gsrl loss).
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='PruningHook',
        schedule=[dict(iter=16000, flops_reduction=0.6)],
        criterion=dict(type='SIRFPCriterion', backbone_beta=0.4,
                       head_beta=0.0),
        input_shape=(512, 512),
        ignore=[
            'decode_head.bottleneck.conv',  # official: aspp.bn1
            'backbone.layer4.2.conv3',  # official: backbone.layer4.2.bn3
            'auxiliary_head.*',  # official: conv_deepsup
        ],
        budget=dict(mode='split', normalizer=None, min_keep=0.02)),
]
