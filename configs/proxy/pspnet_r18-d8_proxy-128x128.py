# The criteria study's second architecture (benchmarks/criteria.py): PSPNet
# with the same ResNetV1c-18 D8 backbone, a narrower pyramid pooling head, at
# 128x128 on the generated scenes.
_base_ = ['./deeplabv3_r18-d8_proxy-128x128.py']

model = dict(
    decode_head=dict(
        _delete_=True,
        type='PSPHead',
        in_channels=512,
        in_index=3,
        channels=64,
        pool_scales=(1, 2, 3, 6),
        dropout_ratio=0.1,
        num_classes=21,
        norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
