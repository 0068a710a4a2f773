"""Dataset loaders: each turns one dataset's files into `(Meta, [Instance])` records (kpsemi/data/records.py).

    lsp, mpii, cub, atrw   the paper's datasets in their official layouts: `load(root, split)`, the archives to
                           download (`FILES`) and `how_to_get()`; by name in `kpsemi.data.SOURCES`
    coco                   any COCO keypoints JSON, and folders of unlabeled images
    dlc                    DeepLabCut projects (CollectedData CSV files + frames sampled from the videos)
"""
