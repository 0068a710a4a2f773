"""kpsemi: semi-supervised keypoint localization, a tutorial and reproduction kit.

Layers, each importing only the ones before it (tests/test_architecture.py):

    config, paths, errors, draw, nbtools   the base: presets, folders, exceptions, pictures and tables, notebooks
    data/         records, loaders (sources/), the embedded dataset (synthetic/), crops, label splits, downloads
    method/       the paper's method: heatmaps, warps, metrics, models, the loss registry, training, evaluation
    baselines/    Gen, Seq-MT, landmark ELT (registered in the method's losses) and PL's pseudo-labels
    multi/        SemiMultiPose, multi-animal semi-supervision
    weak/         weakly supervised keypoints from a classifier
    embeddings/   what the keypoint representations learned (t-SNE, k-NN) and the explorer
    course/       the lesson exercises: their checkers and solutions
    runs          one run from a config, the methods (standard, pl) and the run cache
    repro/        quickstart, the paper's tables, the papers' numbers, the notebooks' metrics record
    cli           `python -m kpsemi ...`
"""
__version__ = "0.1.0"
