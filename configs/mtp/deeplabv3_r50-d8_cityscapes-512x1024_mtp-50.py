# MTP (Chen et al., ICME 2022) on DeepLabV3 R50-D8, Cityscapes (mmseg's
# model zoo), at the paper's headline setting: 2x fewer FLOPs (MACs) at
# 512x1024. One training run (tools/train.py) from the dense checkpoint:
#
#   python tools/train.py configs/mtp/deeplabv3_r50-d8_cityscapes-512x1024_mtp-50.py \
#       --cfg-options load_from=DENSE.pth
#
# or one shot (search on `calibration_batches` batches, prune, optional
# fine-tuning):
#
#   python tools/prune.py configs/mtp/deeplabv3_r50-d8_cityscapes-512x1024_mtp-50.py \
#       --checkpoint DENSE.pth --finetune 80000 --eval
#
# Schedule (the paper's is unknown; these are our choices):
# - iterations 0-4000: score search, network weights frozen; one
#   segmentation step, then one classification step, repeated. Without an
#   ImageNet folder the classification steps are label-free (the dense
#   network's own predictions on the Cityscapes crops are the targets; our
#   extension); with one, set `cls_dataloader` below.
# - iteration 4000: scores folded into the BN layers, channels chosen by
#   |score| under one global threshold to remove 50% of the FLOPs, at least
#   2% of every layer kept.
# - iterations 4000-84000: the zoo's fine-tuning schedule (SGD 0.01, poly),
#   the auxiliary head included.
# Departures: no ImageNet batches unless given; the classifier is the
# mmpretrain ResNetV1c-50 head (the backbone's own pre-training).
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mmseg_prune'], allow_failed_imports=False)

search_iters = 4000
mtp = dict(
    # mmpretrain's ImageNet ResNetV1c-50 (the backbone's pre-training; URL
    # from mmpretrain's model zoo); a local file works too. Keys:
    # head.fc.weight / head.fc.bias.
    classifier=dict(
        num_classes=1000,
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'resnet/resnetv1c50_8xb32_in1k_20220214-3343eccd.pth'),
    alpha=1.0,  # weight of the classification loss
    sparsity=5e-4,  # lambda of the L1 term on the scores
    temperature=1.0,  # of the label-free soft targets
    freeze_weights=True)
period = dict(seg=1, cls=1)
# An ImageNet-style folder (train/<wnid>/*.JPEG), when you have one:
cls_dataloader = None
# cls_dataloader = dict(
#     batch_size=16, num_workers=4,
#     sampler=dict(type='DefaultSampler', shuffle=True),
#     dataset=dict(
#         type='ImageFolderDataset', data_root='data/imagenet/train',
#         pipeline=[
#             dict(type='LoadImageFromFile'),
#             dict(type='RandomResize', scale=(256, 256),
#                  ratio_range=(0.875, 1.25), keep_ratio=True),
#             dict(type='RandomCrop', crop_size=(224, 224)),
#             dict(type='RandomFlip', prob=0.5),
#             dict(type='PackClsInputs'),
#         ]))

model = dict(
    _delete_=True,
    type='MTPSegmentor',
    segmentor={{_base_.model}},
    ignore=['auxiliary_head.*'],
    **mtp)
# Classification steps leave the heads unused.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'gates': dict(lr_mult=10.0, decay_mult=0.0)}))
train_cfg = dict(max_iters=search_iters + 80000)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
         end=search_iters + 80000, by_epoch=False)
]
custom_hooks = [
    dict(type='MTPHook', period=period, cls_dataloader=cls_dataloader),
    dict(type='PruningHook', criterion='mtp', ignore=['auxiliary_head.*'],
         schedule=[dict(iter=search_iters, flops_reduction=0.5)],
         budget=dict(min_keep=0.02)),
]

pruning = dict(
    criterion=dict(type='MTPCriterion', period=period,
                   cls_dataloader=cls_dataloader,
                   optimizer=dict(type='SGD', lr=0.1, momentum=0.9), **mtp),
    flops_reduction=0.5,
    input_shape=(512, 1024),
    calibration_batches=search_iters,
    ignore=['auxiliary_head.*'],
    budget=dict(min_keep=0.02))
