"""The embedded dataset: rendered articulated animals of 8 species, generated offline and deterministically.

    animal   species, the 3-D quadruped skeleton, pose sampling and projection
    scene    drawing one scene: background, clutter, animals, occluders, true visibility flags
    writer   the dataset writer (COCO keypoints JSON + JPEGs) and `ensure`, the cached set under data/
"""
