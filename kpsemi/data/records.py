"""The one record format every dataset loader produces, and its checks.

A loader (COCO, DeepLabCut, LSP, MPII, CUB, ATRW, the embedded set) turns its files into a list of `Instance`s
(one per annotated object, or one per unlabeled image) plus a `Meta` that names the keypoints. `crops.py` then crops
each instance around its box to the model input size. Keypoints are in image pixels, continuous coordinates
(pixel i covers [i, i + 1)), with COCO visibility: 0 not labeled, 1 labeled but hidden, 2 labeled and visible.
"""
import re
from dataclasses import dataclass, field, fields

import numpy as np

from kpsemi.errors import DataError


@dataclass
class Meta:
    name: str
    keypoints: list                       # K names, in heatmap channel order
    skeleton: list = field(default_factory=list)      # (a, b) index pairs, 0-based
    flip_pairs: list = None               # (left, right) index pairs; None: inferred from the names
    classes: list = field(default_factory=list)       # class names (species, bird classes, ...)
    attributes: list = field(default_factory=list)    # per-image binary attribute names
    metric: str = "pck"                   # "pck" (box max side) or "pckh" (0.6 x head-box diagonal)
    sigmas: list = None                   # OKS per-keypoint sigmas (multi-animal); None: uniform

    def __post_init__(self):
        if self.flip_pairs is None:
            self.flip_pairs = infer_flip_pairs(self.keypoints)

    @property
    def num_keypoints(self):
        return len(self.keypoints)

    def flip_permutation(self):
        """Index permutation that swaps every left keypoint with its right twin."""
        perm = list(range(len(self.keypoints)))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def to_dict(self):
        """Plain lists and strings (checkpoints and cache files load it with weights_only=True)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["skeleton"], d["flip_pairs"] = [list(e) for e in self.skeleton], [list(e) for e in self.flip_pairs]
        return d

    @staticmethod
    def from_dict(d):
        d = dict(d)
        d["skeleton"], d["flip_pairs"] = [tuple(e) for e in d["skeleton"]], [tuple(e) for e in d["flip_pairs"]]
        return Meta(**d)


@dataclass
class Instance:
    file: str                             # image path
    keypoints: np.ndarray                 # (K, 3) x, y, v in image pixels; all zero for unlabeled images
    box: tuple                            # (x, y, w, h) in image pixels
    id: str = ""                          # stable id (used by split files)
    cls: int = -1                         # class index into Meta.classes, -1 unknown
    attributes: np.ndarray = None         # (A,) 0/1, -1 unknown
    head_box: tuple = None                # (x1, y1, x2, y2) for PCKh
    labeled: bool = True
    frame: object = None                  # an in-memory image (H, W, 3) uint8 instead of `file` (video frames)
    source: str = ""                      # where it was declared (file and row), named in image errors


_SIDE = re.compile(r"(^|[_\s-])(left|right|l|r)(?=$|[_\s-])", re.IGNORECASE)


def infer_flip_pairs(names):
    """Pairs of keypoint names that differ only by left/right (also l/r, L/R) as a word of the name."""
    def key(n):
        return _SIDE.sub(lambda m: m.group(1) + "<side>", n).lower()

    def side(n):
        m = _SIDE.search(n)
        return m.group(2).lower()[0] if m else None

    pairs, by_key = [], {}
    for i, n in enumerate(names):
        if side(n):
            by_key.setdefault(key(n), []).append(i)
    for idx in by_key.values():
        ls = [i for i in idx if side(names[i]) == "l"]
        rs = [i for i in idx if side(names[i]) == "r"]
        if len(ls) == 1 and len(rs) == 1:
            pairs.append((ls[0], rs[0]))
    return sorted(pairs)


def _numbers(value, where, what):
    """float64 array of a (nested) list of numbers; a string, None or any non-number is a DataError."""
    if isinstance(value, (str, bytes)) or value is None:
        raise DataError(f"{where}: {what} must be a list of numbers, got {_show(value)}")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} must be a list of numbers, got {_show(value)}") from None
    return a


def _show(value, n=60):
    """A short repr of a user's value for a message."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def _plain(values):
    """Numbers as the user wrote them: 10, 2.5 (not np.float64(10.0))."""
    return ", ".join(f"{float(v):g}" for v in np.ravel(values))


def check_keypoints(kp, k, where):
    """(K, 3) float array from a flat or nested list; raises DataError naming `where` on any problem."""
    a = _numbers(kp, where, "keypoints")
    if a.size != 3 * k:
        raise DataError(f"{where}: expected {k} keypoints (x, y, v) = {3 * k} numbers, got {a.size}")
    a = a.reshape(k, 3)
    if not np.isfinite(a).all():
        raise DataError(f"{where}: keypoints contain NaN/inf")
    bad = ~np.isin(a[:, 2], (0, 1, 2))
    if bad.any():
        raise DataError(f"{where}: visibility must be 0, 1 or 2; keypoint {int(np.argmax(bad))} has "
                        f"{_plain(a[bad][0, 2])}")
    return a


def box_from_keypoints(kp, margin=0.1):
    """(x, y, w, h) around the labeled keypoints, enlarged by `margin` of its size on each side."""
    v = kp[:, 2] > 0
    if not v.any():
        return None
    lo, hi = kp[v, :2].min(0), kp[v, :2].max(0)
    size = np.maximum(hi - lo, 1.0)
    lo, hi = lo - margin * size, hi + margin * size
    return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def check_box(box, where):
    """(x, y, w, h) floats of a box; raises DataError naming `where` unless it is 4 finite numbers, w, h > 0."""
    b = _numbers(box, where, "box (x, y, w, h)").reshape(-1)
    if b.size != 4 or not np.isfinite(b).all():
        raise DataError(f"{where}: box must be 4 finite numbers (x, y, w, h), got {_show(box)}")
    if b[2] <= 0 or b[3] <= 0:
        raise DataError(f"{where}: box has non-positive width/height (x, y, w, h = {_plain(b)})")
    return tuple(float(v) for v in b)
