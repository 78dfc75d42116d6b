# MTP (Chen et al., ICME 2022) on DeepLabV3 R50-D8, VOC 2012 aug (mmseg's
# model zoo), at the paper's headline setting: 2x fewer FLOPs (MACs) at
# 512x512. One training run (tools/train.py) from the dense checkpoint:
#
#   python tools/train.py configs/mtp/deeplabv3_r50-d8_voc12aug-512x512_mtp-50.py \
#       --cfg-options load_from=DENSE.pth
#
# or one shot (search on `calibration_batches` batches, prune, optional
# fine-tuning):
#
#   python tools/prune.py configs/mtp/deeplabv3_r50-d8_voc12aug-512x512_mtp-50.py \
#       --checkpoint DENSE.pth --finetune 20000 --eval
#
# Schedule (the paper's is unknown; these are our choices):
# - iterations 0-2000: score search, network weights frozen; one
#   segmentation step, then one classification step, repeated. Without an
#   ImageNet folder the classification steps are label-free (the dense
#   network's own predictions on the VOC images are the targets; our
#   extension); with one, set `cls_dataloader` below.
# - iteration 2000: scores folded into the BN layers, channels chosen by
#   |score| under one global threshold to remove 50% of the FLOPs, at least
#   2% of every layer kept.
# - iterations 2000-22000: the zoo's fine-tuning schedule (SGD 0.01, poly),
#   the auxiliary head included.
# Departures: no ImageNet batches unless given; the classifier is the
# mmpretrain ResNetV1c-50 head (the backbone's own pre-training).
_base_ = [
    'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    './_base_/mtp_recipe.py'
]
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

search_iters = 2000

model = dict(
    _delete_=True,
    type='MTPSegmentor',
    segmentor={{_base_.model}},
    ignore=['auxiliary_head.*'],
    **_base_.mtp)
# The search freezes the weights; this constructor keeps them in the
# optimizer (MMEngine's default leaves frozen parameters out under a
# paramwise_cfg), so they train after the pruning step.
optim_wrapper = dict(
    constructor='MTPOptimWrapperConstructor',
    paramwise_cfg=dict(
        custom_keys={'gates': dict(lr_mult=10.0, decay_mult=0.0)}))
train_cfg = dict(max_iters=search_iters + 20000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
         end=search_iters + 20000, by_epoch=False)
]
custom_hooks = [
    dict(type='MTPHook', period=_base_.period,
         cls_dataloader=_base_.cls_dataloader),
    dict(type='PruningHook', criterion='mtp', ignore=['auxiliary_head.*'],
         schedule=[dict(iter=search_iters, flops_reduction=0.5)],
         budget=dict(min_keep=0.02)),
]

pruning = dict(
    criterion=dict(type='MTPCriterion', period=_base_.period,
                   cls_dataloader=_base_.cls_dataloader,
                   optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
                   **_base_.mtp),
    flops_reduction=0.5,
    input_shape=(512, 512),
    calibration_batches=search_iters,
    ignore=['auxiliary_head.*'],
    budget=dict(min_keep=0.02))
