"""SemiMultiPose (Blau et al.): multi-animal semi-supervision on whole frames, scored by OKS AP.

    data    frames with every annotated instance, the honeybee protocol, the embedded multi-animal scenes
    model   the one-stage three-branch network (B1 keypoints, B2 boxes, B3 offsets) and its decoding
    losses  targets, focal / box / offset losses and the fusion loss
    train   config, presets and training with the seed's schedule
    eval    OKS AP through pycocotools, pictures, the AP curves
    table   the seed's honeybee table (`python -m kpsemi reproduce --table smp`)
"""
