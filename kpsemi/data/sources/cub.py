"""Caltech-UCSD Birds-200-2011 (CUB) part locations in the official text files, with the paper's class-disjoint split.

Layout under root (data/cub/), as `python -m kpsemi data download cub` leaves it (CUB_200_2011.tgz):
    CUB_200_2011/images.txt              <image_id> <class dir>/<file>.jpg
    CUB_200_2011/image_class_labels.txt  <image_id> <class_id 1..200>
    CUB_200_2011/classes.txt             <class_id> <class name, e.g. 001.Black_footed_Albatross>
    CUB_200_2011/bounding_boxes.txt      <image_id> <x> <y> <width> <height>
    CUB_200_2011/parts/parts.txt         <part_id 1..15> <part name, may contain spaces: "left eye">
    CUB_200_2011/parts/part_locs.txt     <image_id> <part_id> <x> <y> <visible 0/1>
    CUB_200_2011/images/<class dir>/<file>.jpg

Split (class-disjoint, as the paper): classes 1-100 train, 101-150 val, 151-200 test. cls = class_id - 1.
The README calls part x, y "the pixel location of the center of the part" (0-based pixel indices from a web tool),
so continuous pixels are x + 0.5. visible 1 -> v=2; visible 0 -> v=0 (CUB gives no location, x = y = 0). Boxes are
the given top-left pixel + width/height, used as they are (pixel x starts at x in continuous coordinates).
"""
import os

import numpy as np

from kpsemi.data import download
from kpsemi.data.records import Instance, Meta, check_box
from kpsemi.errors import DataError

NAME = "cub"
KEYPOINTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left_eye", "left_leg", "left_wing", "nape",
             "right_eye", "right_leg", "right_wing", "tail", "throat"]
_ix = {n: i for i, n in enumerate(KEYPOINTS)}
SKELETON = [(_ix[a], _ix[b]) for a, b in [
    ("beak", "forehead"), ("forehead", "crown"), ("crown", "nape"), ("nape", "back"), ("back", "tail"),
    ("beak", "throat"), ("throat", "breast"), ("breast", "belly"), ("left_eye", "forehead"),
    ("right_eye", "forehead"), ("back", "left_wing"), ("back", "right_wing"), ("belly", "left_leg"),
    ("belly", "right_leg")]]
CLASS_RANGES = {"train": (1, 100), "val": (101, 150), "test": (151, 200)}

# Official archive on CaltechDATA (https://www.vision.caltech.edu/datasets/cub_200_2011/ links there). sha256 and
# size as published by TensorFlow Datasets (tensorflow_datasets/url_checksums/caltech_birds2011.txt: 1150585339
# bytes, 0c685df5...f081) and by torchvision's CUB200 resource, both for this same CUB_200_2011.tgz.
FILES = [
    download.Remote(url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                    sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
                    filename="CUB_200_2011.tgz", size=1150585339),
]


def how_to_get():
    return ("CUB-200-2011 (Wah et al. 2011): page https://www.vision.caltech.edu/datasets/cub_200_2011/ "
            "(archive on https://data.caltech.edu/records/65de6-vp158).\n"
            "  Download, verify (sha256 published by TensorFlow Datasets) and unpack (1.1 GB):\n"
            "    python -m kpsemi data download cub\n"
            "  By hand: put CUB_200_2011.tgz in data/cub/ and run the same command (it is verified, then unpacked),\n"
            "  or unpack it yourself so that data/cub/CUB_200_2011/images.txt exists.")


def _rows(path, fields, last_rest=False):
    """[(line number, [fields])] of a whitespace-separated file; the last field may hold spaces if last_rest."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found\n\n{how_to_get()}")
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split(None, fields - 1) if last_rest else line.split()
            if len(parts) != fields:
                raise DataError(f"{path}: row {n} has {len(parts)} fields, expected {fields}: {line.strip()!r}")
            out.append((n, [p.strip() for p in parts]))
    return out


def _num(path, n, value, what, kind=float):
    try:
        v = kind(value)
    except ValueError:
        raise DataError(f"{path}: row {n}: {what} {value!r} is not a{'n integer' if kind is int else ' number'}") \
            from None
    if kind is float and not np.isfinite(v):
        raise DataError(f"{path}: row {n}: {what} is {v}")
    return v


def _table(path, fields, last_rest=False):
    """{image_id: (row, values)} with duplicate ids refused."""
    out = {}
    for n, parts in _rows(path, fields, last_rest):
        key = _num(path, n, parts[0], "id", int)
        if key in out:
            raise DataError(f"{path}: row {n}: id {key} already appeared in row {out[key][0]}")
        out[key] = (n, parts[1:])
    return out


def meta(class_names):
    return Meta(name=NAME, keypoints=list(KEYPOINTS), skeleton=list(SKELETON), classes=list(class_names),
                metric="pck")


def load(root, split):
    """(Meta, [Instance]) of one class-disjoint split (train/val/test): one instance per image."""
    if split not in CLASS_RANGES:
        raise DataError(f"cub: unknown split {split!r}: use train, val or test")
    d = os.path.join(root, "CUB_200_2011")
    if not os.path.exists(os.path.join(d, "images.txt")):
        raise DataError(f"cub: {os.path.join(d, 'images.txt')} not found\n\n{how_to_get()}")
    images = _table(os.path.join(d, "images.txt"), 2)
    labels = _table(os.path.join(d, "image_class_labels.txt"), 2)
    classes = _table(os.path.join(d, "classes.txt"), 2, last_rest=True)
    boxes = _table(os.path.join(d, "bounding_boxes.txt"), 5)
    parts = _table(os.path.join(d, "parts", "parts.txt"), 2, last_rest=True)

    p = os.path.join(d, "classes.txt")
    if sorted(classes) != list(range(1, 201)):
        raise DataError(f"{p}: expected class ids 1..200, got {len(classes)} ids from {min(classes)} to "
                        f"{max(classes)}")
    class_names = [classes[c][1][0] for c in range(1, 201)]
    p = os.path.join(d, "parts", "parts.txt")
    names = {k: v[1][0].lower().replace(" ", "_") for k, v in parts.items()}
    for k, want in enumerate(KEYPOINTS, 1):
        if names.get(k) != want:
            raise DataError(f"{p}: part {k} should be {want.replace('_', ' ')!r}, got {names.get(k)!r}")

    kps = {i: np.zeros((15, 3)) for i in images}
    seen = {i: set() for i in images}
    p = os.path.join(d, "parts", "part_locs.txt")
    for n, (img, pid, x, y, vis) in _rows(p, 5):
        img, pid = _num(p, n, img, "image_id", int), _num(p, n, pid, "part_id", int)
        x, y, vis = _num(p, n, x, "x"), _num(p, n, y, "y"), _num(p, n, vis, "visible", int)
        if img not in kps:
            raise DataError(f"{p}: row {n}: image_id {img} is not in images.txt")
        if not 1 <= pid <= 15:
            raise DataError(f"{p}: row {n}: part_id {pid} is not one of 1..15")
        if pid in seen[img]:
            raise DataError(f"{p}: row {n}: image {img} part {pid} appears twice")
        if vis not in (0, 1):
            raise DataError(f"{p}: row {n}: visible must be 0 or 1, got {vis}")
        seen[img].add(pid)
        kps[img][pid - 1] = (x + 0.5, y + 0.5, 2) if vis else (0.0, 0.0, 0)

    lo, hi = CLASS_RANGES[split]
    out = []
    for img, (n, (rel,)) in sorted(images.items()):
        where = f"{os.path.join(d, 'images.txt')}: row {n} (image_id {img}, {rel})"
        if img not in labels:
            raise DataError(f"{where}: no class in image_class_labels.txt")
        cls = _num(os.path.join(d, "image_class_labels.txt"), labels[img][0], labels[img][1][0], "class_id", int)
        if not 1 <= cls <= 200:
            raise DataError(f"{os.path.join(d, 'image_class_labels.txt')}: row {labels[img][0]}: class_id {cls} is "
                            "not one of 1..200")
        if not lo <= cls <= hi:
            continue
        if img not in boxes:
            raise DataError(f"{where}: no box in bounding_boxes.txt")
        bn, bvals = boxes[img]
        box = check_box([_num(os.path.join(d, "bounding_boxes.txt"), bn, v, "box value") for v in bvals],
                        f"{os.path.join(d, 'bounding_boxes.txt')}: row {bn} (image_id {img})")
        if len(seen[img]) != 15:
            missing = sorted(set(range(1, 16)) - seen[img])
            raise DataError(f"{os.path.join(d, 'parts', 'part_locs.txt')}: image_id {img} has no row for parts "
                            f"{missing}")
        file = os.path.join(d, "images", rel)
        if not os.path.exists(file):
            raise DataError(f"{where}: image file {file} is missing")
        out.append(Instance(file=file, keypoints=kps[img], box=box, id=rel, cls=cls - 1))
    return meta(class_names), out
