"""Dataset registry: one call from a name to train/val/test crops in the sample format.

    train = datasets.load("synthetic", "train", input_size=128)           # the embedded set (generated offline)
    val = datasets.load("lsp", "val", input_size=256)                      # needs `kpsemi data download lsp`
    d = datasets.load("coco", "train", input_size=128, json="my.json")    # any COCO keypoints file
    d = datasets.load("dlc", "train", input_size=128, project="dlc/")     # a DeepLabCut project

Real datasets live under data/<name>/ in their official layout; each has a module (lsp, mpii, cub, atrw) with
`load(root, split) -> (Meta, [Instance])`, its download `FILES` and a `how_to_get()` text shown when it is missing.
"""
import importlib
import os

from kpsemi.data import crops as D
from kpsemi.paths import data_dir
from kpsemi.errors import DataError

REAL = ("lsp", "mpii", "cub", "atrw")
NAMES = ("synthetic",) + REAL + ("coco", "dlc")


def load_records(name, split, synth_size="default", seed=0, root=None, **kw):
    """(Meta, [Instance]) of one split of a named dataset (no cropping yet)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}: use train, val or test")
    if name == "synthetic":
        from kpsemi.data.sources import coco
        from kpsemi.data.synthetic import writer as synth
        folder = synth.ensure(synth_size, seed, root=root)
        meta, inst = coco.load_coco(os.path.join(folder, f"{split}.json"), name=f"synthetic-{synth_size}-s{seed}")
        return meta, inst
    if name in REAL:
        mod = importlib.import_module(f"kpsemi.data.sources.{name}")
        return mod.load(root or os.path.join(data_dir(), name), split)
    if name == "coco":
        from kpsemi.data.sources import coco
        path = kw.get(f"{split}_json") or kw.get("json")
        if not path:
            raise DataError(f"coco: no JSON given for the {split} split (--{split}-json FILE)")
        return coco.load_coco(path, image_root=kw.get("image_root"))
    if name == "dlc":
        from kpsemi.data.sources import dlc
        return dlc.load_split(kw["project"], split, seed=seed)
    raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}")


def load(name, split, input_size, progress=True, **kw):
    """KeypointData crops of one split at `input_size`, cached under data/cache."""
    meta, inst = load_records(name, split, **kw)
    return D.cached(meta, inst, input_size, progress=progress, desc=f"{meta.name} {split}")
