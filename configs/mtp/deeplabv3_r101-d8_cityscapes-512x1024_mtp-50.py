# MTP on DeepLabV3 R101-D8, Cityscapes: the R50 recipe (deeplabv3_r50-d8_cityscapes-512x1024_mtp-50.py)
# with the zoo's R101 backbone and its own ImageNet classifier. Same schedule
# and choices. Start from the dense R101 checkpoint:
#
#   python tools/train.py configs/mtp/deeplabv3_r101-d8_cityscapes-512x1024_mtp-50.py \
#       --cfg-options load_from=DENSE_R101.pth
_base_ = ['./deeplabv3_r50-d8_cityscapes-512x1024_mtp-50.py']

# mmpretrain's ImageNet ResNetV1c-101, the backbone's own pre-training.
classifier_r101 = dict(
    checkpoint='https://download.openmmlab.com/mmclassification/v0/'
    'resnet/resnetv1c101_8xb32_in1k_20220214-434fe45f.pth')
model = dict(
    segmentor=dict(
        pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101)),
    classifier=classifier_r101)
pruning = dict(criterion=dict(classifier=classifier_r101))
