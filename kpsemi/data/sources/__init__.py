"""Dataset loaders: each turns one dataset's files into `(Meta, [Instance])` records (kpsemi/data/records.py).

    lsp, mpii, cub, atrw   the paper's datasets in their official layouts (`load(root, split)`, download `FILES`)
    coco                   any COCO keypoints JSON, and folders of unlabeled images
    dlc                    DeepLabCut projects (CollectedData CSV files + frames sampled from the videos)
"""
