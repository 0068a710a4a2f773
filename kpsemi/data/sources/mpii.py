"""MPII Human Pose in its official MATLAB release, split as the paper uses it (10,000 / 3,311 / 2,958 persons).

Layout under root (data/mpii/), as `python -m kpsemi data download mpii` leaves it:
    images/<name>.jpg                                               (from mpii_human_pose_v1.tar.gz)
    mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat          (from mpii_human_pose_v1_u12_2.zip)

The .mat holds the struct RELEASE: annolist(i).image.name, annolist(i).annorect(j) with the head box x1, y1, x2, y2,
annopoints.point(k).{id, x, y, is_visible}, scale and objpos; img_train(i) (1 = training image, the only images
with keypoints); single_person, act, video_list (unused). Read with loadmat(struct_as_record=False,
squeeze_me=True), a one-element struct array becomes a bare struct, an empty field an empty array, and
is_visible arrives as a number, a string ('0'/'1') or empty; `_items`/`_get`/`_visible` absorb those quirks.
Joint ids 0..15 follow KEYPOINTS. is_visible 1 -> v=2, 0 -> v=1 (labeled, occluded), missing -> v=2 (labeled,
visibility not recorded); a joint without a point is v=0. Coordinates are MATLAB 1-based (the usual converters
subtract 1 for 0-based pixel indices), so continuous pixels are x - 0.5; the head box is shifted the same way.

Split: persons of training images that have annopoints (persons without are counted and warned about). The paper's
exact lists are not public, so images are shuffled with a fixed seed and their persons dealt, one image at a time
(an image's persons never straddle two splits), to test (2,958), then val (3,311), then train (10,000); the
remaining annotated persons (about 12,000) are in no split. With fewer than 16,269 persons (test fixtures) the
three sizes are scaled proportionally and train takes the rest. Box: the labeled joints and the head box,
enlarged by 10 % per side (box_from_keypoints); metric "pckh" (normalised by 0.6 x the head-box diagonal, crops.py).
"""
import os
import warnings

import numpy as np
import scipy.io

from kpsemi.data import download
from kpsemi.data.records import Instance, Meta, box_from_keypoints
from kpsemi.errors import DataError

NAME = "mpii"
KEYPOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
             "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
             "left_wrist"]
SKELETON = [(0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12), (12, 7),
            (13, 7), (13, 14), (14, 15)]
SIZES = {"train": 10000, "val": 3311, "test": 2958}
SEED = 0
MAT = "mpii_human_pose_v1_u12_1.mat"

# Official files from http://human-pose.mpi-inf.mpg.de/#download. No published checksum was found for either
# archive: sha256=None, so the downloader refuses them unless --allow-unverified (which prints the sha256).
FILES = [
    download.Remote(url="https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1_u12_2.zip",
                    sha256=None, filename="mpii_human_pose_v1_u12_2.zip"),
    download.Remote(url="https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz",
                    sha256=None, filename="mpii_human_pose_v1.tar.gz"),
]


def how_to_get():
    return ("MPII Human Pose (Andriluka et al. 2014): page http://human-pose.mpi-inf.mpg.de/#download.\n"
            "  Download and unpack (about 12.9 GB): python -m kpsemi data download mpii --allow-unverified\n"
            "  (no checksum is published for these archives: --allow-unverified is required and prints their sha256).\n"
            "  By hand: put mpii_human_pose_v1.tar.gz and mpii_human_pose_v1_u12_2.zip in data/mpii/ and run the same\n"
            "  command, or unpack them yourself so that data/mpii/images/*.jpg and\n"
            f"  data/mpii/mpii_human_pose_v1_u12_2/{MAT} exist.")


def meta():
    return Meta(name=NAME, keypoints=list(KEYPOINTS), skeleton=list(SKELETON), metric="pckh")


def _items(x):
    """A struct field that may be one struct, an array of structs or empty, as a list."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return list(x.ravel())
    return [x]


def _get(s, name):
    """Field `name` of a struct; None when absent or empty."""
    v = getattr(s, name, None)
    if v is None or (isinstance(v, np.ndarray) and v.size == 0) or (isinstance(v, str) and not v.strip()):
        return None
    return v


def _num(v, where, what):
    try:
        f = float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) if not isinstance(v, str) else float(v)
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{where}: {what} is not a number ({v!r})") from None
    if not np.isfinite(f):
        raise DataError(f"{where}: {what} is {f}")
    return f


def _visible(v, where):
    """is_visible as 0/1, or None when not recorded."""
    if v is None:
        return None
    f = _num(v.strip() if isinstance(v, str) else v, where, "is_visible")
    if f not in (0, 1):
        raise DataError(f"{where}: is_visible is {f:g}, expected 0 or 1")
    return int(f)


def _person(r, where):
    """(keypoints (16, 3), head box (x1, y1, x2, y2)) of one annorect, or None when it has no annopoints."""
    ap = _get(r, "annopoints")
    points = _items(_get(ap, "point")) if ap is not None else []
    if not points:
        return None
    kp = np.zeros((16, 3))
    for k, p in enumerate(points):
        w = f"{where}.annopoints.point({k + 1})"
        if _get(p, "id") is None or _get(p, "x") is None or _get(p, "y") is None:
            raise DataError(f"{w}: a point needs id, x and y")
        pid = _num(p.id, w, "id")
        if pid != int(pid) or not 0 <= pid < 16:
            raise DataError(f"{w}: joint id {pid:g} is not one of 0..15")
        pid = int(pid)
        if kp[pid, 2] > 0:
            raise DataError(f"{w}: joint id {pid} ({KEYPOINTS[pid]}) appears twice")
        vis = _visible(_get(p, "is_visible"), w)
        kp[pid] = (_num(p.x, w, "x") - 0.5, _num(p.y, w, "y") - 0.5, 1 if vis == 0 else 2)
    head = []
    for f in ("x1", "y1", "x2", "y2"):
        if _get(r, f) is None:
            raise DataError(f"{where}: has annopoints but no head box field {f}")
        head.append(_num(getattr(r, f), where, f) - 0.5)
    if head[2] <= head[0] or head[3] <= head[1]:
        raise DataError(f"{where}: head box x1, y1, x2, y2 = {tuple(v + 0.5 for v in head)} is empty")
    return kp, tuple(head)


_CACHE = {}


def read_release(path):
    """All annotated persons of training images: list of (image index, image name, rect index, kp, head box)."""
    if not os.path.exists(path):
        raise DataError(f"mpii: {path} not found\n\n{how_to_get()}")
    key = (path, os.path.getmtime(path), os.path.getsize(path))
    if key in _CACHE:
        return _CACHE[key]
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as e:
        raise DataError(f"{path}: cannot read as a MATLAB file ({e})") from None
    rel = mat.get("RELEASE")
    if rel is None or _get(rel, "annolist") is None or _get(rel, "img_train") is None:
        raise DataError(f"{path}: expected a struct RELEASE with fields annolist and img_train")
    annolist, img_train = _items(rel.annolist), np.atleast_1d(rel.img_train).ravel()
    if len(img_train) != len(annolist):
        raise DataError(f"{path}: RELEASE.img_train has {len(img_train)} entries but annolist has {len(annolist)}")
    persons, without = [], 0
    for i, anno in enumerate(annolist):
        if int(img_train[i]) != 1:
            continue
        image = _get(anno, "image")
        name = _get(image, "name") if image is not None else None
        if not isinstance(name, str):
            raise DataError(f"{path}: annolist({i + 1}).image.name is missing")
        for j, r in enumerate(_items(_get(anno, "annorect"))):
            got = _person(r, f"{path}: annolist({i + 1}).annorect({j + 1}) (image {name})")
            if got is None:
                without += 1
            else:
                persons.append((i, name, j) + got)
    _CACHE.clear()
    _CACHE[key] = (persons, without)
    return persons, without


def split_sizes(n):
    if n >= sum(SIZES.values()):
        return dict(SIZES)
    total = sum(SIZES.values())
    test, val = round(n * SIZES["test"] / total), round(n * SIZES["val"] / total)
    return {"train": n - test - val, "val": val, "test": test}


def assign(persons, seed=SEED):
    """{split: [person indices]}: images in a seeded order, each image's persons to the first split with room."""
    by_image = {}
    for k, p in enumerate(persons):
        by_image.setdefault(p[0], []).append(k)
    images = sorted(by_image)
    order = np.random.default_rng(seed).permutation(len(images))
    room, out = split_sizes(len(persons)), {"train": [], "val": [], "test": []}
    if len(persons) < sum(SIZES.values()):
        room["train"] = len(persons)   # scaled down: train takes whatever test and val leave
    for o in order:
        ks = by_image[images[o]]
        for s in ("test", "val", "train"):
            if len(out[s]) + len(ks) <= room[s]:
                out[s] += ks
                break
    return out


def load(root, split):
    """(Meta, [Instance]) of one split (train/val/test) of the MPII training persons."""
    if split not in ("train", "val", "test"):
        raise DataError(f"mpii: unknown split {split!r}: use train, val or test")
    path = next((p for p in (os.path.join(root, "mpii_human_pose_v1_u12_2", MAT), os.path.join(root, MAT))
                 if os.path.exists(p)), os.path.join(root, "mpii_human_pose_v1_u12_2", MAT))
    persons, without = read_release(path)
    if without:
        warnings.warn(f"{path}: {without} persons of training images have no annopoints (no joints) and were not "
                      "used", stacklevel=2)
    if not persons:
        raise DataError(f"{path}: no annotated persons in training images")
    out = []
    for k in sorted(assign(persons)[split]):
        i, name, j, kp, head = persons[k]
        file = os.path.join(root, "images", name)
        if not os.path.exists(file):
            raise DataError(f"{path}: annolist({i + 1}) names image {name}, but {file} is missing\n\n{how_to_get()}")
        x1, y1, x2, y2 = head
        pts = np.vstack([kp[kp[:, 2] > 0], [[x1, y1, 2], [x2, y2, 2]]])
        out.append(Instance(file=file, keypoints=kp.copy(), box=box_from_keypoints(pts), id=f"{name}#{j}",
                            head_box=head))
    return meta(), out
