"""Data: every dataset as records, crops around each object as tensors, label splits. Imports nothing of the method.

    records     the one record format of every loader (`Meta`, `Instance`) and its checks
    sources/    loaders: lsp, mpii, cub, atrw (the paper's datasets), coco (any COCO keypoints JSON), dlc
    synthetic/  the embedded dataset (animal, scene, writer), generated offline
    samples     the sample container both kinds of samples share (subset, batches, cache files)
    crops       `KeypointData`: square crops around each box, the sample format of training
    geometry    3x3 matrices in normalised coordinates, warping images and keypoints, crop matrices
    splits      label splits written once to data/splits/
    download    download, verify and safely unpack the official archives

Start here: one call from a dataset name to train/val/test crops.

    train = data.load("synthetic", "train", input_size=128)           # the embedded set (generated offline)
    val = data.load("lsp", "val", input_size=256)                      # needs `kpsemi data download lsp`
    d = data.load("coco", "train", input_size=128, json="my.json")    # any COCO keypoints file
    d = data.load("dlc", "train", input_size=128, project="dlc/")     # a DeepLabCut project

Real datasets live under data/<name>/ in their official layout; each has a module in `SOURCES` with
`load(root, split) -> (Meta, [Instance])`, its download `FILES` and a `how_to_get()` text shown when it is missing.
"""
import os

from kpsemi.data import crops
from kpsemi.data.sources import atrw, coco, cub, dlc, lsp, mpii
from kpsemi.data.synthetic import writer
from kpsemi.errors import DataError
from kpsemi.paths import data_dir

SOURCES = {"lsp": lsp, "mpii": mpii, "cub": cub, "atrw": atrw}      # the paper's datasets, by name
REAL = tuple(SOURCES)
NAMES = ("synthetic",) + REAL + ("coco", "dlc")


def source(name):
    """The loader module of a paper dataset (lsp, mpii, cub, atrw)."""
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def load_records(name, split, synth_size="default", seed=0, root=None, **kw):
    """(Meta, [Instance]) of one split of a named dataset (no cropping yet)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}: use train, val or test")
    if name == "synthetic":
        folder = writer.ensure(synth_size, seed, root=root)
        return coco.load_coco(os.path.join(folder, f"{split}.json"), name=f"synthetic-{synth_size}-s{seed}")
    if name in SOURCES:
        return SOURCES[name].load(root or os.path.join(data_dir(), name), split)
    if name == "coco":
        path = kw.get(f"{split}_json") or kw.get("json")
        if not path:
            raise DataError(f"coco: no JSON given for the {split} split (--{split}-json FILE)")
        return coco.load_coco(path, image_root=kw.get("image_root"))
    if name == "dlc":
        return dlc.load_split(kw["project"], split, seed=seed)
    raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}")


def load(name, split, input_size, progress=True, **kw):
    """KeypointData crops of one split at `input_size`, cached under data/cache."""
    meta, inst = load_records(name, split, **kw)
    return crops.materialize_cached(meta, inst, input_size, progress=progress, desc=f"{meta.name} {split}")
