"""Own data from DeepLabCut projects: CollectedData CSV files + unlabeled frames sampled from the videos.

The CSV layout (single animal): three header rows `scorer`, `bodyparts`, `coords` (x, y per body part), then one
row per labeled frame: the image path (one column, or DLC >= 2.2's three columns labeled-data/<video>/<file>)
followed by x, y in pixels; empty cells mean "not labeled" (v = 0). DLC has no occlusion flag, so labeled points
get v = 2. The crop box of a frame is the whole frame, as for the video frames, so labeled and unlabeled crops match.

    meta, inst = dlc.load_project("my-project/")                 # all labeled frames
    meta, inst = dlc.load_split("my-project/", "train", seed=0)  # seeded 80/10/10 frame split
    frames = dlc.video_frames("my-project/videos/a.mp4", meta, n=500, seed=0)
"""
import csv
import glob
import os

import numpy as np
from PIL import Image

from kpsemi.data.records import Instance, Meta
from kpsemi.errors import DataError

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def find_csvs(project):
    if os.path.isfile(project):
        return [project]
    found = sorted(glob.glob(os.path.join(project, "CollectedData*.csv"))
                   + glob.glob(os.path.join(project, "labeled-data", "*", "CollectedData*.csv")))
    if not found:
        raise DataError(f"{project}: no CollectedData*.csv (looked in the folder and labeled-data/*/)")
    return found


def read_csv(path):
    """(body part names, [(row number, image path, (K, 3) keypoints)]) from one DLC CSV."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 4:
        raise DataError(f"{path}: expected 3 header rows (scorer, bodyparts, coords) and data rows")
    heads = [r[0].strip().lower() if r else "" for r in rows[:4]]
    if heads[1] == "individuals":
        raise DataError(f"{path}: a multi-animal DeepLabCut file (has an 'individuals' row); convert it to COCO "
                        "keypoints and use the COCO path")
    if heads[:3] != ["scorer", "bodyparts", "coords"]:
        raise DataError(f"{path}: header rows must start with scorer, bodyparts, coords; got {heads[:3]}")
    coords = rows[2]
    first = next((i for i, c in enumerate(coords) if c.strip() == "x"), None)
    if first is None:
        raise DataError(f"{path}: row 3 (coords) has no 'x' column")
    parts, coords = rows[1][first:], coords[first:]
    if len(parts) % 2 or any(c != ("x" if i % 2 == 0 else "y") for i, c in enumerate(coords)):
        raise DataError(f"{path}: row 3 must alternate x, y for every body part")
    names = parts[0::2]
    if parts[1::2] != names:
        raise DataError(f"{path}: row 2 must name each body part twice (x and y columns)")
    out = []
    for n, r in enumerate(rows[3:], start=4):
        if not any(c.strip() for c in r):
            continue
        if len(r) != first + len(parts):
            raise DataError(f"{path}: row {n} has {len(r)} cells, expected {first + len(parts)}")
        image = "/".join(c.strip() for c in r[:first] if c.strip())
        kp = np.zeros((len(names), 3))
        for k in range(len(names)):
            x, y = r[first + 2 * k].strip(), r[first + 2 * k + 1].strip()
            if not x and not y:
                continue
            try:
                kp[k] = (float(x), float(y), 2.0)
            except ValueError:
                raise DataError(f"{path}: row {n}, body part {names[k]!r}: x, y must be numbers or empty, got "
                                f"{x!r}, {y!r}") from None
            if not np.isfinite(kp[k, :2]).all():
                raise DataError(f"{path}: row {n}, body part {names[k]!r}: non-finite coordinate")
        out.append((n, image, kp))
    return names, out


def load_project(project, name=None):
    """(Meta, [Instance]) of every labeled frame of a DLC project folder (or one CSV)."""
    csvs = find_csvs(project)
    names, instances = None, []
    for path in csvs:
        nm, rows = read_csv(path)
        if names is None:
            names = nm
        elif nm != names:
            raise DataError(f"{path}: body parts differ from {csvs[0]}")
        root = project if os.path.isdir(project) else os.path.dirname(project)
        for n, image, kp in rows:
            file = next((p for p in (os.path.join(root, image), os.path.join(os.path.dirname(path), image),
                                     os.path.join(os.path.dirname(path), os.path.basename(image)))
                         if os.path.exists(p)), None)
            if file is None:
                raise DataError(f"{path}: row {n}: image {image!r} not found under {root}")
            if not (kp[:, 2] > 0).any():
                raise DataError(f"{path}: row {n}: no labeled body part (remove the row or label it)")
            try:
                with Image.open(file) as im:
                    w, h = im.size
            except OSError as e:
                raise DataError(f"{path}: row {n}: image {file} cannot be read as an image ({e})") from None
            instances.append(Instance(file=file, keypoints=kp, box=(0.0, 0.0, float(w), float(h)),
                                      id=os.path.relpath(file, root), source=f"{path}: row {n}"))
    base = os.path.basename(os.path.normpath(project if os.path.isdir(project) else os.path.dirname(project)))
    return Meta(name=name or f"dlc-{base}", keypoints=names), instances


def load_split(project, split, seed=0):
    """A seeded 80/10/10 split of the labeled frames (DLC projects carry no official split)."""
    meta, inst = load_project(project)
    perm = np.random.default_rng([4321, seed]).permutation(len(inst))
    n_tr = int(round(SPLIT_FRACTIONS["train"] * len(inst)))
    n_va = int(round(SPLIT_FRACTIONS["val"] * len(inst)))
    sel = {"train": perm[:n_tr], "val": perm[n_tr:n_tr + n_va], "test": perm[n_tr + n_va:]}[split]
    if len(sel) == 0:
        raise DataError(f"{project}: too few labeled frames ({len(inst)}) for a {split} split")
    return meta, [inst[i] for i in sorted(sel)]


def video_frames(video, meta, n=200, seed=0):
    """Up to n frames sampled evenly-at-random from a video, as unlabeled instances (decoded with PyAV)."""
    try:
        import av
    except ImportError:
        raise DataError("reading videos needs PyAV: pip install av") from None
    if not os.path.exists(video):
        raise DataError(f"{video}: video not found")
    try:
        with av.open(video) as c:
            total = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
        rng = np.random.default_rng([999, seed])
        pick = set(np.sort(rng.choice(total, size=min(n, total), replace=False)).tolist()) if total else set()
        frames = {}
        with av.open(video) as c:  # decode once more, keeping only the picked frames
            for i, f in enumerate(c.decode(video=0)):
                if i in pick:
                    frames[i] = f.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise DataError(f"{video}: cannot decode ({e})") from None
    if not frames:
        raise DataError(f"{video}: no frames")
    pick = sorted(frames)
    h, w = frames[pick[0]].shape[:2]
    return [Instance(file=f"{video}#{i}", keypoints=np.zeros((meta.num_keypoints, 3)),
                     box=(0.0, 0.0, float(w), float(h)), id=f"{os.path.basename(video)}#{i}", labeled=False,
                     frame=frames[i]) for i in pick]


def project_videos(project):
    vids = []
    for ext in ("mp4", "avi", "mov", "mkv"):
        vids += glob.glob(os.path.join(project, "videos", f"*.{ext}"))
    return sorted(vids)
