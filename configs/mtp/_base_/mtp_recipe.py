# MTP's recipe, shared by the configs in configs/mtp/: the search's
# settings and the classification branch. A config inherits an mmseg model
# config and this file, then sets search_iters, the model wrapper, the
# hooks and `pruning` from `_base_.mtp`, `_base_.period` and
# `_base_.cls_dataloader`.
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

# Classification steps leave the heads unused.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
