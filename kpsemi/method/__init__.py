"""The method of Moskvyak et al. (ICLR 2021): networks, losses, training and evaluation.

    heatmaps   Gaussian targets, sub-pixel decoding, soft-argmax
    warp       batched homographies: augmentation and the perspective warps g(., s)
    metrics    PCK@0.1 / PCKh@0.5 and the identity diagnostics
    models     KLN (HRNet) + semantic keypoint representations z_i = GMP(F * h_i) + KCN
    losses     the loss registry: supervised, SC, TE, TI, ELT
    train      the trainer
    evaluate   predictions and PCK of a model on a dataset

Start with losses.py (Eq. 1-5 of the paper) and models.py.
"""
