# SIRFP's COCO-Stuff-10K recipe (official scripts/coco/finetune_graph_multi.sh)
# on mmseg's DeepLabV3 R50-D8, in ONE training run: train 6k iterations
# while collecting statistics, prune 30% of the FLOPs (MACs) with the edge
# score, train 6k more collecting the gradient-variant statistics, prune to
# 60% in all, fine-tune to 66k (official: 54k after the second step).
#
#   python tools/train.py configs/sirfp/deeplabv3_r50-d8_coco-stuff10k-512x512_sirfp-30-60.py
#
# Same as official: 512x512 crops, batch 16, SGD lr 1e-3, statistics EMA
# 0.999 on BN outputs, beta 0.4 backbone / 0 head, gradient variant
# 0.4*G - R for the second step, backbone and head cut at one quantile, at
# least 2% of each layer kept, official never-pruned layers, FLOPs at
# 512x512. Departs: one poly schedule over 66k (official restarts it per
# stage, with a 1k warm-up and wd 5e-4 after the first step; wd 1e-4 is
# kept throughout here); mmseg's plain cross-entropy (no class-balanced
# resampling, no gsrl loss).
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-40k_coco-stuff10k-512x512.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

max_iters = 66000
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=6000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
custom_hooks = [
    dict(
        type='PruningHook',
        schedule=[
            dict(iter=6000, flops_reduction=0.3),
            dict(iter=12000, flops_reduction=0.6,
                 criterion=dict(type='SIRFPCriterion', gradient_weight=0.4)),
        ],
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
