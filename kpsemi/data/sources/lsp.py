"""Leeds Sports Pose (LSP) and LSP-extended (LSPET) in their official files, split as the paper uses them.

The paper trains on the 10,000 LSPET images and validates/tests on the 2,000 original LSP images. The original LSP is
split in its two standard halves: val = im0001-im1000 (the half usually used for training), test = im1001-im2000
(the half every LSP benchmark tests on). With fewer images (test fixtures) the first half is val, the rest test.

Layout under root (data/lsp/), as `python -m kpsemi data download lsp` leaves it (the zips have no top folder):
    lsp_dataset/joints.mat   + lsp_dataset/images/im0001.jpg ... im2000.jpg       (from lsp_dataset.zip)
    lspet_dataset/joints.mat + lspet_dataset/images/im00001.jpg ... im10000.jpg  (from lspet_dataset.zip)

joints.mat holds one matrix 'joints': 3 x 14 x 2000 in LSP, 14 x 3 x 10000 in LSPET; per joint x, y and a flag.
The flag means opposite things in the two files. LSP: 1 = occluded (every joint has a location, occluded ones are
estimated), 0 = visible; LSPET: 1 = visible, 0 = not visible. Sources: both READMEs only say "visibility flags";
bearpaw/pytorch-pose miscs/gen_lsp.m inverts the LSP flag (`joints(3,:,:) = 1 - joints(3,:,:)`) and keeps the
LSPET one, and other public LSP loaders do `logical_not` on the LSP flag only. We map LSP occluded -> v=1 (labeled,
hidden; still evaluated, as in the usual LSP PCK over all 14 joints), LSP visible -> v=2, LSPET visible -> v=2 and
LSPET not visible -> v=0 (not labeled: LSPET gives no reliable location for those).
Coordinates are MATLAB 1-based pixel coordinates (pixel k's centre is k); in our continuous convention (pixel i
covers [i, i+1), centre i + 0.5) that is x - 0.5.
"""
import os
import warnings

import numpy as np
import scipy.io

from kpsemi.data import download
from kpsemi.data.records import Instance, Meta, box_from_keypoints
from kpsemi.errors import DataError

NAME = "lsp"
KEYPOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
             "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top"]
SKELETON = [(0, 1), (1, 2), (3, 4), (4, 5), (2, 3), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12), (9, 12), (2, 8),
            (3, 9), (12, 13)]

# Official files from the authors' pages http://sam.johnson.io/research/lsp.html and .../lspet.html (the old
# www.comp.leeds.ac.uk/mat4saj/ links are dead). No published checksum was found for either zip: sha256=None, so
# the downloader refuses them unless --allow-unverified, which prints the computed sha256 to pin here.
FILES = [
    download.Remote(url="https://sam.johnson.io/research/lsp_dataset.zip", sha256=None,
                    filename="lsp_dataset.zip", into="lsp_dataset"),
    download.Remote(url="https://sam.johnson.io/research/lspet_dataset.zip", sha256=None,
                    filename="lspet_dataset.zip", into="lspet_dataset"),
]
SOURCES = {"lsp": ("lsp_dataset", "im{:04d}.jpg", (3, 14)), "lspet": ("lspet_dataset", "im{:05d}.jpg", (14, 3))}


def how_to_get():
    return ("LSP + LSP-extended (Johnson & Everingham): pages http://sam.johnson.io/research/lsp.html and "
            "http://sam.johnson.io/research/lspet.html.\n"
            "  Download and unpack: python -m kpsemi data download lsp --allow-unverified\n"
            "  (no checksum is published for these zips: --allow-unverified is required and prints their sha256).\n"
            "  By hand: put lsp_dataset.zip and lspet_dataset.zip in data/lsp/ and run the same command, or unzip\n"
            "  them yourself into data/lsp/lsp_dataset/ and data/lsp/lspet_dataset/ (each with joints.mat and\n"
            "  images/). If https fails, the same files are at http://sam.johnson.io/research/.")


def meta():
    return Meta(name=NAME, keypoints=list(KEYPOINTS), skeleton=list(SKELETON), metric="pck")


def read_joints(path, source):
    """(N, 14, 3) x, y, v from an official joints.mat; `source` is "lsp" or "lspet" (they differ, see above)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found\n\n{how_to_get()}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for a damaged file
        raise DataError(f"{path}: cannot read as a MATLAB file ({e})") from None
    if "joints" not in mat:
        raise DataError(f"{path}: no matrix 'joints' (has {sorted(k for k in mat if not k.startswith('__'))})")
    j = np.asarray(mat["joints"], dtype=np.float64)
    lead = SOURCES[source][2]
    if j.ndim != 3 or j.shape[:2] != lead:
        raise DataError(f"{path}: 'joints' must be {lead[0]} x {lead[1]} x N for {source.upper()}, got "
                        f"{' x '.join(map(str, j.shape))}")
    j = j.transpose(2, 1, 0) if source == "lsp" else j.transpose(2, 0, 1)   # -> (N, 14, 3)
    for i, row in enumerate(j):
        where = f"{path}: image {i + 1} (im{i + 1:0{4 if source == 'lsp' else 5}d}.jpg)"
        bad = ~np.isin(row[:, 2], (0, 1))
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(f"{where}: joint {k + 1} ({KEYPOINTS[k]}) has flag {row[k, 2]:g}, expected 0 or 1")
        if not np.isfinite(row[:, :2]).all():
            k = int(np.argmax(~np.isfinite(row[:, :2]).all(1)))
            raise DataError(f"{where}: joint {k + 1} ({KEYPOINTS[k]}) has a NaN/inf coordinate")
    out = np.empty_like(j)
    out[..., :2] = j[..., :2] - 0.5                      # MATLAB 1-based -> continuous pixels
    flag = j[..., 2]
    out[..., 2] = np.where(flag == 1, 1, 2) if source == "lsp" else np.where(flag == 1, 2, 0)
    out[out[..., 2] == 0, :2] = 0.0
    return out


def _folder(root, source):
    """root/lsp_dataset (or root/lsp_dataset/lsp_dataset, should the zip carry a top folder after all)."""
    name = SOURCES[source][0]
    for d in (os.path.join(root, name), os.path.join(root, name, name)):
        if os.path.exists(os.path.join(d, "joints.mat")):
            return d
    raise DataError(f"lsp: {os.path.join(root, name, 'joints.mat')} not found\n\n{how_to_get()}")


def _instances(root, source, index):
    folder, pattern = _folder(root, source), SOURCES[source][1]
    mat = os.path.join(folder, "joints.mat")
    joints = read_joints(mat, source)
    out, skipped = [], 0
    for i in index(len(joints)):
        name = pattern.format(i + 1)
        file = os.path.join(folder, "images", name)
        if not os.path.exists(file):
            raise DataError(f"{mat}: image {i + 1} has joints but its image {file} is missing")
        box = box_from_keypoints(joints[i])
        if box is None:  # an LSPET image with no visible joint: nothing to learn or measure
            skipped += 1
            continue
        out.append(Instance(file=file, keypoints=joints[i], box=box, id=f"{source}/{name}"))
    if skipped:
        warnings.warn(f"{mat}: {skipped} images have no visible joint and were not used", stacklevel=3)
    return out


def load(root, split):
    """(Meta, [Instance]) for split train (LSPET), val (LSP first half) or test (LSP second half)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"lsp: unknown split {split!r}: use train, val or test")
    if split == "train":
        return meta(), _instances(root, "lspet", lambda n: range(n))
    half = {"val": lambda n: range(n // 2), "test": lambda n: range(n // 2, n)}[split]
    return meta(), _instances(root, "lsp", half)
