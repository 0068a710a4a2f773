"""The method of Moskvyak et al. (ICLR 2021): networks, losses, training and evaluation. It imports only `data` and
the base modules; the baselines plug into its loss registry instead of being imported.

    heatmaps   Gaussian targets, sub-pixel decoding, soft-argmax
    warp       the random warps g(., s) and the standard augmentation
    metrics    PCK@0.1 / PCKh@0.5 and the identity diagnostics
    models     KLN (HRNet) + semantic keypoint representations z_i = GMP(F * h_i) + KCN; build_model, load_model
    losses     the loss registry: supervised, SC (Eq. 1), TE (Eq. 2), TI (Eq. 4), ELT, and what each needs
    train      the training loop every trainer shares (TrainLoop), the method's Trainer, the run-folder policy
    evaluate   predictions and PCK of a model on a dataset
    device     the default device and bf16 autocast
    distributed  one run on several processes (torchrun, DDP): shards, loss scaling, rank 0's duties, run locks
    imagenet   ImageNet weights for the backbone from a local file, checked by sha256 (offline clusters)

Start with losses.py (the paper's losses) and models.py.
"""
