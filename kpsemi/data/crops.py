"""The one sample format for all datasets: crops around each object's box, held as tensors.

`materialize` turns loader records (`records.Instance`) into a `KeypointData`: every image is cropped to a square
of side 1.25 x the box's longer side around the box centre, resized to the model input size S, and kept as uint8;
keypoints, box and the PCK normaliser are moved into crop pixels. Crops are cached under data/cache, so epochs
index tensors instead of decoding files. A sample:

    {"image": (3, S, S) uint8, "keypoints": (K, 3) float, "box": (4,) xywh, "meta": {"id", "class", "attributes"}}

and `KeypointData.batch(idx, device)` stacks samples into the batch dict the trainer consumes (samples.py).
"""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from kpsemi.data import geometry
from kpsemi.data.samples import Samples
from kpsemi.paths import data_dir
from kpsemi.data.records import Meta
from kpsemi.errors import DataError


@dataclass
class KeypointData(Samples):
    """Square crops around each object, the sample format of training; `batch(idx, device)` gives image (B, 3, S, S)
    float in [0, 1], keypoints (B, K, 3), box (B, 4), norm (B,), cls (B,), attributes (B, A), labeled (B,), index
    (B,) (samples.py)."""
    BATCH = {"keypoints": "keypoints", "box": "boxes", "norm": "norm", "cls": "cls", "attributes": "attributes",
             "labeled": "labeled"}

    meta: Meta
    images: torch.Tensor        # (N, 3, S, S) uint8
    keypoints: torch.Tensor     # (N, K, 3) float32, crop pixels, v in {0, 1, 2}
    boxes: torch.Tensor         # (N, 4) float32 xywh in crop pixels
    norm: torch.Tensor          # (N,) PCK normaliser l in crop pixels (box max side, or head size for PCKh)
    cls: torch.Tensor           # (N,) int64 class, -1 unknown
    attributes: torch.Tensor    # (N, A) int64 0/1, -1 unknown
    labeled: torch.Tensor       # (N,) bool: has keypoint labels
    transforms: torch.Tensor    # (N, 3, 3) float64 original image pixels -> crop pixels
    ids: list
    files: list

    @property
    def size(self):
        return self.images.shape[-1]

    def __getitem__(self, i):
        return {"image": self.images[i], "keypoints": self.keypoints[i], "box": self.boxes[i],
                "meta": {"id": self.ids[i], "class": int(self.cls[i]), "attributes": self.attributes[i].tolist(),
                         "file": self.files[i], "labeled": bool(self.labeled[i])}}


def _load_rgb(inst):
    if inst.frame is not None:
        return np.ascontiguousarray(inst.frame[..., :3])
    try:
        with Image.open(inst.file) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:                       # not an image, truncated, unreadable
        where = f"{inst.source}: image" if inst.source else "image"
        raise DataError(f"{where} {inst.file} cannot be read as an image ({e})") from None


def crop(img, box, size, pad=1.25):
    """Crop an (H, W, 3) uint8 image around box to (3, size, size) uint8; returns (crop, 3x3 pixel transform).

    Large reductions are first box-filtered (PIL reduce) so small inputs do not alias."""
    T = geometry.crop_matrix(box, size, pad)
    s = float(T[0, 0])
    f = int(1.0 / (2.0 * s)) if s < 0.5 else 1
    if f > 1:
        img = np.asarray(Image.fromarray(img).reduce(f))
        Tr = T @ torch.diag(torch.tensor([float(f), float(f), 1.0], dtype=torch.float64))
    else:
        Tr = T
    h, w = img.shape[:2]
    x = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)[None].float()
    Hn = geometry.pixel_to_norm(Tr.float(), (w, h), (size, size))[None]
    out = geometry.warp(x, Hn, (size, size))[0]
    return out.round().clamp(0, 255).to(torch.uint8), T


def materialize(meta, instances, size, pad=1.25, workers=4, progress=True, desc="crops"):
    """KeypointData of `instances` (records.Instance) at input size `size`."""
    n, K = len(instances), meta.num_keypoints
    if n == 0:
        raise DataError(f"{meta.name}: no instances to load")
    A = len(meta.attributes)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    kps = torch.zeros(n, K, 3)
    boxes, norm = torch.zeros(n, 4), torch.zeros(n)
    Ts = torch.zeros(n, 3, 3, dtype=torch.float64)

    def one(i):
        inst = instances[i]
        img = _load_rgb(inst)
        c, T = crop(img, inst.box, size, pad)
        return i, c, T

    # the bar closes (and clears its line) before an error propagates, so the error is a line of its own
    with ThreadPoolExecutor(workers) as ex, tqdm(total=n, desc=desc, disable=not progress, leave=False) as bar:
        for i, c, T in ex.map(one, range(n)):
            bar.update(1)
            inst = instances[i]
            images[i], Ts[i] = c, T
            kp = torch.as_tensor(inst.keypoints, dtype=torch.float64)
            xy = torch.cat([kp[:, :2], torch.ones(K, 1, dtype=torch.float64)], 1) @ T.T
            v = kp[:, 2].clone()
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size)
            v[~inside] = 0
            kps[i] = torch.cat([xy[:, :2] * (v > 0)[:, None], v[:, None]], 1).float()
            s = float(T[0, 0])
            x, y, w, h = inst.box
            boxes[i] = torch.tensor([x * s + T[0, 2], y * s + T[1, 2], w * s, h * s])
            if meta.metric == "pckh" and inst.head_box is not None:
                x1, y1, x2, y2 = inst.head_box
                norm[i] = 0.6 * float(np.hypot(x2 - x1, y2 - y1)) * s
            else:
                norm[i] = max(w, h) * s
    attrs = torch.full((n, A), -1, dtype=torch.long)
    for i, inst in enumerate(instances):
        if inst.attributes is not None and A:
            attrs[i] = torch.as_tensor(inst.attributes, dtype=torch.long)
    return KeypointData(meta=meta, images=images, keypoints=kps, boxes=boxes, norm=norm,
                        cls=torch.tensor([inst.cls for inst in instances], dtype=torch.long), attributes=attrs,
                        labeled=torch.tensor([bool(inst.labeled) for inst in instances]), transforms=Ts,
                        ids=[str(inst.id) for inst in instances], files=[inst.file for inst in instances])


def fingerprint(instances, size, pad):
    """A short hash of what a materialized set depends on (files, boxes, keypoints, size)."""
    h = hashlib.sha1(f"{size}:{pad}".encode())
    for inst in instances:
        h.update(f"{inst.file}|{inst.id}|{inst.box}|{inst.labeled}".encode())
        h.update(np.ascontiguousarray(inst.keypoints, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def materialize_cached(meta, instances, size, pad=1.25, cache_dir=None, progress=True, desc="crops"):
    """`materialize`, memoised on disk under data/cache (keyed by `fingerprint`); loads with weights_only=True."""
    cache_dir = cache_dir or os.path.join(data_dir(), "cache")
    path = os.path.join(cache_dir, f"{meta.name}-{size}-{fingerprint(instances, size, pad)}.pt")
    return KeypointData.load_or_build(path, lambda: materialize(meta, instances, size, pad, progress=progress,
                                                                desc=desc))
