"""Weakly supervised keypoints from a classifier (Shan, seed 003), notebook 09.

    classifier   an image classifier trained on class labels only
    saliency     occlusion sensitivity and guided backpropagation
    peaks        max-pool NMS and Foerstner sub-pixel refinement
    pipeline     WeakConfig, the detector (maps -> keypoints) and its scoring; `run` is the whole experiment
"""
