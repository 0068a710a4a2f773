"""Own data: where a run's data comes from when it is not a named dataset, and the record a run folder keeps of it.

    spec = DataSpec(train_json="train.json", val_json="val.json", test_json="test.json")   # own COCO files
    spec = DataSpec(dlc_project="my-project/")                                             # a DeepLabCut project
    meta, inst = own_records(spec, "test")        # one split, named after the training set as every split of it
    write_spec(spec, "runs/mine")                 # runs/mine/data.json: the spec with absolute paths
    read_spec("runs/mine")                        # the DataSpec again (None for a folder without data.json)
    split_folder("runs/mine")                     # where the label split file of own data goes

A run folder records its DataSpec in data.json, so whatever reads the run later (the explorer, the embedding export)
can load the images it trained on. The label split of own data is written into the run folder, or under
$KPSEMI_DATA/splits/ when that is set; never into data/splits/ of the source checkout, which holds only the named
datasets' committed splits.
"""
import json
import os
from dataclasses import dataclass, fields

from kpsemi.data.sources import coco, dlc
from kpsemi.errors import UserError
from kpsemi.paths import data_dir, write_json_atomic


@dataclass
class DataSpec:
    """Where the data comes from; the default (all None) is the embedded dataset of the config's synth_size."""
    train_json: str = None
    val_json: str = None
    test_json: str = None
    image_root: str = None
    unlabeled_dir: str = None
    dlc_project: str = None
    video_frames: int = 500

    def own(self):
        """True for own data (COCO files or a DeepLabCut project), False for a named dataset."""
        return bool(self.train_json or self.dlc_project)


PATHS = tuple(f.name for f in fields(DataSpec) if f.name != "video_frames")     # the fields that name files


def own_records(spec, split, data_seed=0):
    """(Meta, [Instance]) of one split of own data (COCO files or a DeepLabCut project), named after the training
    set as every split of it is (coco-<train file name>, dlc-<project folder>)."""
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split {split!r}: use train, val or test")
    if spec.train_json:
        path = {"train": spec.train_json, "val": spec.val_json, "test": spec.test_json}[split]
        if not path:
            raise UserError(f"with --train-json also give --val-json and --test-json (no {split} file)")
        meta, inst = coco.load_coco(path, image_root=spec.image_root)
        meta.name = "coco-" + os.path.splitext(os.path.basename(spec.train_json))[0]
        return meta, inst
    if spec.dlc_project:
        return dlc.load_split(spec.dlc_project, split, seed=data_seed)
    raise UserError("this DataSpec names no own data (give train_json + val_json + test_json, or dlc_project)")


def split_folder(run_dir):
    """Where the label split file of own data goes: $KPSEMI_DATA/splits/ when that is set, else the run folder
    (None: nowhere, the split is made in memory; it is deterministic)."""
    if os.environ.get("KPSEMI_DATA"):
        return os.path.join(data_dir(), "splits")
    return run_dir


def write_spec(spec, run_dir):
    """run_dir/data.json: the run's DataSpec (None: the named dataset of its config) with absolute paths."""
    doc = {k: (os.path.abspath(v) if k in PATHS and isinstance(v, str) else v)
           for k, v in vars(spec or DataSpec()).items()}
    os.makedirs(run_dir, exist_ok=True)
    write_json_atomic(doc, os.path.join(run_dir, "data.json"), indent=1)


def read_spec(run_dir):
    """The DataSpec a run folder recorded in data.json, or None where it has none."""
    path = os.path.join(run_dir, "data.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            spec = DataSpec(**json.load(f))
    except (json.JSONDecodeError, TypeError):
        raise UserError(f"{path}: not a data.json of a kpsemi run (fields {', '.join(vars(DataSpec()))})") from None
    if not all(getattr(spec, k) is None or isinstance(getattr(spec, k), str) for k in PATHS):
        raise UserError(f"{path}: the data paths must be text or null")
    return spec
