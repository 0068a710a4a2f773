"""ATRW (Amur Tiger Re-identification in the Wild), pose track, from its official COCO-style JSON files.

Official split, as the paper uses it: 3,610 train / 516 val / 1,033 test images. Archives (CVWC 2019, hosted by
LILA): atrw_pose_{train,val,test}.tar.gz hold the images (train/, val/, test/) and atrw_anno_pose_train.tar.gz
holds keypoint_train.json and keypoint_val.json. The test keypoints were withheld during the challenge; we expect
them as atrw_anno_pose_test.tar.gz -> keypoint_test.json, names NOT verified (they follow LILA's published
atrw_anno_reid_test.tar.gz): if that download fails, place the official test JSON as keypoint_test.json anywhere
under data/atrw/. Everything is unpacked into data/atrw/; the loader finds each JSON anywhere below it and the
images in <split>/, atrw_pose_<split>/<split>/, atrw_pose_<split>/ or images/<split>/.

The JSON is COCO keypoints except that images carry "filename" instead of "file_name" (as mmpose notes); it is
rewritten to a temporary COCO file for `kpsemi.coco.load_coco`, and its error messages are mapped back to the
official file. 15 keypoints, in the order of KEYPOINTS (checked against mmpose's atrw dataset_info). COCO
coordinates are already continuous pixels; boxes are the given "bbox".
"""
import json
import os
import tempfile
import warnings

from kpsemi.data import download
from kpsemi.data.sources.coco import load_coco, read_document
from kpsemi.data.records import Meta
from kpsemi.errors import DataError

NAME = "atrw"
KEYPOINTS = ["left_ear", "right_ear", "nose", "right_shoulder", "right_front_paw", "left_shoulder",
             "left_front_paw", "right_hip", "right_knee", "right_back_paw", "left_hip", "left_knee", "left_back_paw",
             "tail", "center"]
_ix = {n: i for i, n in enumerate(KEYPOINTS)}
SKELETON = [(_ix[a], _ix[b]) for a, b in [
    ("left_ear", "nose"), ("right_ear", "nose"), ("nose", "center"), ("left_shoulder", "left_front_paw"),
    ("left_shoulder", "center"), ("right_shoulder", "right_front_paw"), ("right_shoulder", "center"),
    ("tail", "center"), ("right_back_paw", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "tail"),
    ("left_back_paw", "left_knee"), ("left_knee", "left_hip"), ("left_hip", "tail")]]
JSON = {"train": "keypoint_train.json", "val": "keypoint_val.json", "test": "keypoint_test.json"}

# Official archives (https://cvwc2019.github.io/challenge.html; hosted by LILA, https://lila.science/datasets/atrw,
# also at https://lilablobssc.blob.core.windows.net/cvwc2019/...). No published checksums were found: sha256=None,
# so the downloader refuses them unless --allow-unverified (which prints the computed sha256 to pin here).
_LILA = "https://storage.googleapis.com/public-datasets-lila/cvwc2019/"
FILES = [
    download.Remote(url=_LILA + "train/atrw_anno_pose_train.tar.gz", sha256=None,
                    filename="atrw_anno_pose_train.tar.gz"),
    download.Remote(url=_LILA + "train/atrw_pose_train.tar.gz", sha256=None, filename="atrw_pose_train.tar.gz"),
    download.Remote(url=_LILA + "train/atrw_pose_val.tar.gz", sha256=None, filename="atrw_pose_val.tar.gz"),
    download.Remote(url=_LILA + "test/atrw_pose_test.tar.gz", sha256=None, filename="atrw_pose_test.tar.gz"),
    # last, as its name is the least certain (see the docstring): everything else is in place should it fail
    download.Remote(url=_LILA + "test/atrw_anno_pose_test.tar.gz", sha256=None,
                    filename="atrw_anno_pose_test.tar.gz"),
]


def how_to_get():
    return ("ATRW pose track (Li et al. 2020): pages https://cvwc2019.github.io/challenge.html and "
            "https://lila.science/datasets/atrw.\n"
            "  Download and unpack: python -m kpsemi data download atrw --allow-unverified\n"
            "  (no checksum is published for these archives: --allow-unverified is required and prints their sha256).\n"
            "  By hand: put atrw_anno_pose_train.tar.gz, atrw_pose_train.tar.gz, atrw_pose_val.tar.gz,\n"
            "  atrw_pose_test.tar.gz and the pose test annotations (atrw_anno_pose_test.tar.gz) in data/atrw/ and run\n"
            "  the same command, or unpack them yourself into data/atrw/ so that keypoint_train.json,\n"
            "  keypoint_val.json, keypoint_test.json and the folders train/, val/, test/ of images are below it.")


def meta(classes=("tiger",)):
    return Meta(name=NAME, keypoints=list(KEYPOINTS), skeleton=list(SKELETON), classes=list(classes), metric="pck")


def _find(root, name):
    for d, _, files in sorted(os.walk(root)):
        if name in files:
            return os.path.join(d, name)
    return None


def _image_dir(root, split, first_file):
    for d in (os.path.join(root, split), os.path.join(root, f"atrw_pose_{split}", split),
              os.path.join(root, f"atrw_pose_{split}"), os.path.join(root, "images", split)):
        if os.path.exists(os.path.join(d, first_file)):
            return d
    raise DataError(f"atrw: image {first_file} of the {split} split not found in {root}/{split}/ (nor in "
                    f"atrw_pose_{split}/ or images/{split}/)\n\n{how_to_get()}")


def load(root, split):
    """(Meta, [Instance]) of the official train, val or test split."""
    if split not in JSON:
        raise DataError(f"atrw: unknown split {split!r}: use train, val or test")
    path = _find(root, JSON[split]) if os.path.isdir(root) else None
    if path is None:
        raise DataError(f"atrw: {JSON[split]} not found under {root}\n\n{how_to_get()}")
    doc = read_document(path)
    if not isinstance(doc.get("images"), list) or not doc["images"]:
        raise DataError(f"{path}: no COCO 'images' list")
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or ("filename" not in im and "file_name" not in im):
            raise DataError(f"{path}: images[{i}] has neither 'filename' nor 'file_name'")
        im.setdefault("file_name", im.get("filename"))
    cats = doc.get("categories") or [{}]
    k = len(cats[0].get("keypoints", [])) if isinstance(cats[0], dict) else 0
    if k != len(KEYPOINTS):
        raise DataError(f"{path}: categories[0] has {k} keypoints, ATRW has {len(KEYPOINTS)}")
    image_dir = _image_dir(root, split, doc["images"][0]["file_name"])
    with tempfile.TemporaryDirectory() as tmp:
        coco_path = os.path.join(tmp, os.path.basename(path))
        with open(coco_path, "w") as f:
            json.dump(doc, f)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m, instances = load_coco(coco_path, image_root=image_dir, name=NAME)
        except DataError as e:
            raise DataError(str(e).replace(coco_path, path)) from None
    for w in caught:
        warnings.warn(str(w.message).replace(coco_path, path), w.category, stacklevel=2)
    return meta(m.classes), instances
