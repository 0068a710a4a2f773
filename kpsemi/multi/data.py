"""Multi-animal frames for SemiMultiPose: whole frames with every annotated instance, not crops around one animal.

A frame keeps all its instances' keypoints, padded to M instances (v = 0 rows), and is resized once to the working
resolution (`scale` x the original, padded right/bottom to a multiple of 32). Evaluation maps predictions back to
the original frame with the stored per-axis scale, so OKS is computed on full-resolution coordinates.

    meta, frames = coco_frames("train.json")                      # any COCO keypoints file, grouped per image
    d = materialize_cached(meta, frames, scale=0.25)              # MultiFrames, cached under data/cache
    train, test, lab, unl = honeybee(root, "train25", seed=3)     # the SemiMultiPose honeybee protocol
    train, test, lab, unl = synthetic("smoke", labeled=0.1)       # the embedded generator's multi-animal scenes
    x, kp = augment(train.batch(lab[:4]), 160, g, 180, (0.8, 1.2), 0.5, meta.flip_permutation())   # on device

Honeybee (seed 002): Train135 = all 135 training frames; five Train25 and five Train5 subsets drawn with fixed
seeds and written once to data/splits/honeybee-smp.json; unlabeled = the 80 frames of unlabeled/ plus, for Train25
and Train5, the training frames outside the subset with their labels hidden; test = the 30 test frames.
"""
import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from kpsemi.data import geometry
from kpsemi.data.records import Meta
from kpsemi.data.samples import Samples
from kpsemi.data.sources import coco
from kpsemi.data.synthetic import writer
from kpsemi.errors import DataError
from kpsemi.paths import data_dir, splits_dir, write_json_atomic


@dataclass
class Frame:
    file: str
    keypoints: np.ndarray       # (M, K, 3) original pixels, COCO visibility; M = 0 for an unlabeled frame
    areas: np.ndarray           # (M,) OKS area of each instance in original pixels^2
    size: tuple                 # (w, h) original pixels
    id: str
    labeled: bool = True


@dataclass
class MultiFrames(Samples):
    """Whole frames with every instance (kpsemi/data/samples.py); `batch(idx, device)` gives image (B, 3, H, W) float
    in [0, 1], keypoints (B, M, K, 3), valid (B, 2), labeled (B,), index (B,)."""
    BATCH = {"keypoints": "keypoints", "valid": "valid", "labeled": "labeled"}

    meta: Meta
    images: torch.Tensor        # (N, 3, H, W) uint8, working resolution, zero padded right/bottom
    keypoints: torch.Tensor     # (N, M, K, 3) float32 working pixels; padding instances are all zero
    areas: torch.Tensor         # (N, M) float64 OKS areas, original pixels^2
    scale: torch.Tensor         # (N, 2) float64 working / original pixels, per axis (sx, sy)
    valid: torch.Tensor         # (N, 2) int64 (w, h) of the image inside the padding, working pixels
    labeled: torch.Tensor       # (N,) bool
    ids: list
    files: list

    def instances(self):
        """Number of annotated instances per frame (N,)."""
        return (self.keypoints[..., 2] > 0).any(-1).sum(-1)


def augment(batch, crop, g, rotation, scale, flip, perm):
    """Random rotation / scale / flip and a crop (side `crop`, centred on a random point of the frame), on device.
    Returns images (B, 3, c, c) and keypoints (B, M, K, 3); keypoints leaving the crop get v = 0."""
    x, kp, valid = batch["image"], batch["keypoints"], batch["valid"].double()
    B, _, H, W = x.shape
    dev = x.device
    oh, ow = (crop, crop) if crop else (H, W)
    r = torch.rand(B, 5, generator=g, device=dev).double()
    c = valid * r[:, :2] if crop else valid / 2                                   # (B, 2) crop centre, input px
    a = (r[:, 2] * 2 - 1) * math.radians(rotation)
    s = scale[0] + r[:, 3] * (scale[1] - scale[0])
    f = torch.where(r[:, 4] < flip, -1.0, 1.0).double()
    T = torch.zeros(B, 3, 3, dtype=torch.float64, device=dev)
    T[:, 0, 0], T[:, 0, 1] = s * f * torch.cos(a), -s * torch.sin(a)
    T[:, 1, 0], T[:, 1, 1] = s * f * torch.sin(a), s * torch.cos(a)
    out_c = torch.tensor([ow / 2, oh / 2], dtype=torch.float64, device=dev)
    T[:, :2, 2] = out_c - (T[:, :2, :2] @ c[..., None])[..., 0]                  # the crop centre lands mid-crop
    T[:, 2, 2] = 1
    xo = geometry.warp(x, geometry.pixel_to_norm(T, (W, H), (ow, oh)).float(), (oh, ow))
    xy = (T[:, None, None, :2, :2] @ kp[..., :2, None].double())[..., 0] + T[:, None, None, :2, 2]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < ow) & (xy[..., 1] >= 0) & (xy[..., 1] < oh) & (kp[..., 2] > 0)
    ko = torch.cat([xy.float() * inside[..., None], (kp[..., 2] * inside)[..., None]], -1)
    flipped = (f < 0)[:, None, None, None]
    return xo, torch.where(flipped, ko[:, :, perm], ko)


# ---- loading ---------------------------------------------------------------------------------------------------
def coco_frames(path, image_root=None, name=None):
    """(Meta, [Frame]) from a COCO keypoints file: one Frame per image (images without annotations included)."""
    meta, inst = coco.load_coco(path, image_root, name=name)          # validates every annotation, names the bad one
    with open(path) as f:
        doc = json.load(f)
    by_id, seen = {}, set()
    for i, a in enumerate(doc["annotations"]):
        key = str(a.get("id", i))
        if key in by_id:
            raise DataError(f"{path}: annotation id={key} (annotations[{i}]) repeats an earlier annotation's id")
        by_id[key] = (i, a)
    per_image = {}
    for it in inst:
        i, a = by_id[it.id]
        area = a.get("area")
        if area is not None and (not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0):
            raise DataError(f"{path}: annotation id={it.id} (annotations[{i}]): 'area' must be a number >= 0, "
                            f"got {area!r}")
        area = float(area) if area else it.box[2] * it.box[3]          # no area: the box's
        per_image.setdefault(a["image_id"], []).append((it.keypoints, area, it.file))
    frames = []
    for i, im in enumerate(doc["images"]):
        if im["id"] in seen:
            raise DataError(f"{path}: images[{i}] repeats image id {im['id']!r}")
        seen.add(im["id"])
        rows = per_image.get(im["id"], [])
        file = rows[0][2] if rows else coco._resolve_image(path, image_root, im["file_name"])
        if "width" in im and "height" in im:
            if not all(isinstance(im[k], int) and im[k] > 0 for k in ("width", "height")):
                raise DataError(f"{path}: images[{i}] (id {im['id']!r}): width and height must be positive "
                                f"integers, got {im['width']!r} x {im['height']!r}")
            size = (im["width"], im["height"])
        else:
            size = _image_size(file)
        K = meta.num_keypoints
        frames.append(Frame(file=file, keypoints=np.array([r[0] for r in rows]).reshape(-1, K, 3),
                            areas=np.array([r[1] for r in rows], dtype=np.float64), size=size, id=str(im["id"])))
    return meta, frames


def _image_size(file):
    try:
        with Image.open(file) as im:
            return im.size
    except OSError as e:
        raise DataError(f"{file}: cannot read image ({e})") from None


def folder_frames(folder, meta):
    """Unlabeled frames: every image of a folder."""
    return [Frame(file=it.file, keypoints=np.zeros((0, meta.num_keypoints, 3)), areas=np.zeros(0),
                  size=(int(it.box[2]), int(it.box[3])), id=it.id, labeled=False)
            for it in coco.image_folder(folder, meta)]


def _load(frame, scale):
    try:
        with Image.open(frame.file) as im:
            im = im.convert("RGB")
            if im.size != tuple(frame.size):
                raise DataError(f"{frame.file}: image is {im.size[0]}x{im.size[1]} but its annotation file says "
                                f"{frame.size[0]}x{frame.size[1]}")
            w, h = max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))
            return np.asarray(im.resize((w, h), Image.BILINEAR) if scale != 1 else im)
    except OSError as e:
        raise DataError(f"{frame.file}: cannot read image ({e})") from None


def materialize(meta, frames, scale=1.0, multiple=32, progress=True, desc="frames"):
    """MultiFrames of `frames` at `scale` x their original size (anti-aliased resize, padded to `multiple`)."""
    if not frames:
        raise DataError(f"{meta.name}: no frames to load")
    K = meta.num_keypoints
    ws = [max(1, round(f.size[0] * scale)) for f in frames]
    hs = [max(1, round(f.size[1] * scale)) for f in frames]
    H, W = -(-max(hs) // multiple) * multiple, -(-max(ws) // multiple) * multiple
    M = max(1, max(len(f.keypoints) for f in frames))
    n = len(frames)
    images = torch.zeros(n, 3, H, W, dtype=torch.uint8)
    kps, areas = torch.zeros(n, M, K, 3), torch.zeros(n, M, dtype=torch.float64)
    sc = torch.tensor([[w / f.size[0], h / f.size[1]] for f, w, h in zip(frames, ws, hs)], dtype=torch.float64)
    with ThreadPoolExecutor(4) as ex:
        for i, img in enumerate(tqdm(ex.map(lambda f: _load(f, scale), frames), total=n, desc=desc,
                                     disable=not progress, leave=False)):
            images[i, :, :img.shape[0], :img.shape[1]] = torch.from_numpy(img.copy()).permute(2, 0, 1)
            kp = torch.as_tensor(frames[i].keypoints, dtype=torch.float64)          # (m, K, 3)
            m = kp.shape[0]
            if m:
                xy = kp[..., :2] * sc[i] * (kp[..., 2:] > 0)
                kps[i, :m] = torch.cat([xy, kp[..., 2:]], -1).float()
                areas[i, :m] = torch.as_tensor(frames[i].areas)
    return MultiFrames(meta=meta, images=images, keypoints=kps, areas=areas, scale=sc,
                       valid=torch.tensor(list(zip(ws, hs)), dtype=torch.long),
                       labeled=torch.tensor([f.labeled for f in frames]), ids=[f.id for f in frames],
                       files=[f.file for f in frames])


def materialize_cached(meta, frames, scale=1.0, progress=True, desc="frames"):
    """`materialize`, memoised under data/cache (keyed by the files, labels and scale); loads with weights_only."""
    h = hashlib.sha1(f"multi:{scale}".encode())
    for f in frames:
        h.update(f"{f.file}|{f.id}|{f.size}|{f.labeled}".encode())
        h.update(np.ascontiguousarray(f.keypoints, dtype=np.float64).tobytes())
    path = os.path.join(data_dir(), "cache", f"{meta.name}-multi-{h.hexdigest()[:16]}.pt")
    return MultiFrames.load_or_build(path, lambda: materialize(meta, frames, scale, progress=progress, desc=desc), meta)


# ---- the honeybee protocol ---------------------------------------------------------------------------------------
SUBSETS = {"train135": 135, "train25": 25, "train5": 5}
N_SUBSETS = 5


def honeybee_splits(train_ids, path=None):
    """{"train135": ids, "train25": {"0".."4": ids}, "train5": {...}}: read from data/splits/honeybee-smp.json or
    drawn (numpy seed [2022, size, subset]) and written there on first use."""
    ids = sorted(str(i) for i in train_ids)
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
    path = path or os.path.join(splits_dir(), "honeybee-smp.json")
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
        if doc.get("digest") != digest:
            raise DataError(f"{path}: made for other training frames (digest {doc.get('digest')}, these are "
                            f"{digest}); delete it to draw new subsets")
        return doc
    if len(ids) < SUBSETS["train25"]:
        raise DataError(f"{path}: the honeybee protocol draws 25-frame subsets, but there are {len(ids)} training "
                        "frames")
    doc = {"digest": digest, "n_train": len(ids), "train135": ids}
    for name in ("train25", "train5"):
        n = SUBSETS[name]
        doc[name] = {str(s): sorted(ids[i] for i in np.random.default_rng([2022, n, s]).choice(len(ids), n, False))
                     for s in range(N_SUBSETS)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomic(doc, path, indent=1)
    return doc


def honeybee_root(root=None):
    root = root or os.environ.get("KPSEMI_HONEYBEE") or os.path.join(data_dir(), "honeybee")
    if not os.path.exists(os.path.join(root, "train.json")):
        raise DataError(f"{root}: no honeybee train.json here; pass root= (or set $KPSEMI_HONEYBEE) to the folder "
                        "with train.json, test.json, images/ and unlabeled/ (the beePose frames in COCO format)")
    return root


def honeybee(root=None, subset="train135", seed=0, scale=0.25, progress=True):
    """(train, test, labeled idx, unlabeled idx): train = the subset's labeled frames + unlabeled frames."""
    if subset not in SUBSETS:
        raise DataError(f"unknown honeybee training set {subset!r}: use one of {', '.join(SUBSETS)}")
    root = honeybee_root(root)
    meta, tr = coco_frames(os.path.join(root, "train.json"), name="honeybee")
    _, te = coco_frames(os.path.join(root, "test.json"), name="honeybee")
    meta.sigmas = [0.5] * meta.num_keypoints            # the seed's sigma^2 = 1: (2 sigma)^2 = 1 in pycocotools
    doc = honeybee_splits([f.id for f in tr])
    keep = set(doc[subset] if subset == "train135" else doc[subset][str(seed)])
    lab = [f for f in tr if f.id in keep]
    extra = [Frame(f.file, np.zeros((0, meta.num_keypoints, 3)), np.zeros(0), f.size, f.id, False)
             for f in tr if f.id not in keep]
    unl = folder_frames(os.path.join(root, "unlabeled"), meta) + extra
    train = MultiFrames.concat([materialize_cached(meta, lab, scale, progress, f"honeybee {subset}"),
                                materialize_cached(meta, unl, scale, progress, "honeybee unlabeled")])
    test = materialize_cached(meta, te, scale, progress, "honeybee test")
    return train, test, torch.arange(len(lab)), torch.arange(len(lab), len(train))


# ---- the embedded generator's multi-animal scenes ------------------------------------------------------------------
def drop_annotations(frames, p, seed=0):
    """Partial labels: each annotated instance of a labeled frame loses its annotation with probability p (the
    animal stays in the image, unlabeled, as the bees the honeybee annotators skipped). Deterministic in seed."""
    out = []
    for f in frames:
        r = np.random.default_rng([seed, 77, int(hashlib.sha1(f.id.encode()).hexdigest()[:8], 16)])
        keep = r.random(len(f.keypoints)) >= p
        if len(f.keypoints) and not keep.any():
            keep[r.integers(len(keep))] = True                          # keep at least one labeled animal
        out.append(Frame(f.file, f.keypoints[keep], f.areas[keep], f.size, f.id, f.labeled))
    return out


def synthetic(size="smoke", labeled=0.1, seed=0, animals=(2, 4), drop=0.15, data_seed=0, scale=1.0,
              progress=True):
    """(train, test, labeled idx, unlabeled idx) of multi-animal scenes of the embedded generator.

    The first round(labeled x n) frames of a seeded permutation keep their (partially dropped) labels; the other
    training frames are the unlabeled pool. Test frames keep all annotations."""
    folder = writer.ensure(size, data_seed, progress=progress, animals=tuple(animals))
    name = f"synthmulti-{size}-s{data_seed}-a{animals[0]}_{animals[1]}"
    meta, tr = coco_frames(os.path.join(folder, "train.json"), name=name)
    _, te = coco_frames(os.path.join(folder, "test.json"), name=name)
    meta.sigmas = [0.5] * meta.num_keypoints            # the seed's sigma^2 = 1 (honeybee, mouse pups)
    perm = np.random.default_rng([1234, seed]).permutation(len(tr))
    n_lab = max(1, round(labeled * len(tr)))
    lab = drop_annotations([tr[i] for i in perm[:n_lab]], drop, seed)
    unl = [Frame(tr[i].file, tr[i].keypoints[:0], tr[i].areas[:0], tr[i].size, tr[i].id, False) for i in perm[n_lab:]]
    train = materialize_cached(meta, lab + unl, scale, progress, "synthetic multi-animal train")
    test = materialize_cached(meta, te, scale, progress, "synthetic multi-animal test")
    return train, test, torch.arange(n_lab), torch.arange(n_lab, len(train))
