"""The sample container of the kit: N samples held as tensors whose first dimension is the sample, beside a `Meta`
and per-sample lists (ids, files). Two layouts use it: `crops.KeypointData` (one object per square crop, what the
method trains on) and `kpsemi.multi.data.MultiFrames` (whole frames with every animal, SemiMultiPose).

A layout is a dataclass of such fields with an `images` (N, 3, H, W) uint8 field and a `BATCH` map from batch keys to
its fields; this class gives it what both need: batches on a device, subsets, hidden labels, concatenation, and a
state dict of plain tensors and lists for cache files that load with torch.load(weights_only=True).
"""
import os
from dataclasses import fields

import torch

from kpsemi.data.records import Meta
from kpsemi.paths import save_atomic


class Samples:
    BATCH = {}          # batch key -> field name, besides "image" (float in [0, 1]) and "index"

    def __len__(self):
        return self.images.shape[0]

    def batch(self, idx, device="cpu"):
        """Batch dict on `device`: image (B, 3, H, W) float in [0, 1], the BATCH fields of the samples `idx`, and
        index (B,)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        nb = str(device).startswith("cuda")
        out = {"image": self.images[idx].to(device, non_blocking=nb).float().div_(255)}
        out.update({k: getattr(self, f)[idx].to(device) for k, f in self.BATCH.items()})
        out["index"] = idx.to(device)
        return out

    def subset(self, idx):
        """The samples `idx` (tensor fields and lists indexed, the rest shared)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in idx.tolist()] \
                if isinstance(v, list) else v
        return type(self)(**kw)

    def unlabel(self):
        """The same samples with their labels hidden (keypoints zeroed, labeled False)."""
        out = self.subset(torch.arange(len(self)))
        out.keypoints, out.labeled = torch.zeros_like(self.keypoints), torch.zeros_like(self.labeled)
        return out

    @classmethod
    def concat(cls, parts):
        """One container from several of the same layout and keypoints; tensor fields are zero-padded at the end of
        every dimension to the largest part (frames of different sizes, different numbers of animals)."""
        kw = {}
        for f in fields(cls):
            vals = [getattr(p, f.name) for p in parts]
            if isinstance(vals[0], torch.Tensor):
                shape = [max(v.shape[d] for v in vals) for d in range(1, vals[0].dim())]
                kw[f.name] = torch.cat([torch.nn.functional.pad(v, [x for d in reversed(range(len(shape)))
                                                                    for x in (0, shape[d] - v.shape[d + 1])])
                                        for v in vals])
            elif isinstance(vals[0], list):
                kw[f.name] = sum(vals, [])
            else:
                kw[f.name] = vals[0]
        return cls(**kw)

    def to_state(self):
        """Plain tensors, lists and a meta dict (torch.load(weights_only=True) reads it back)."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        return {**state, "meta": self.meta.to_dict()}

    @classmethod
    def from_state(cls, s, meta=None):
        """The container of `to_state`'s dict; `meta` replaces the stored one (a state may have none)."""
        return cls(meta=meta or Meta.from_dict(s["meta"]), **{k: v for k, v in s.items() if k != "meta"})

    @classmethod
    def load_or_build(cls, path, build, meta=None):
        """The container saved at `path` (torch file, weights_only); else `build()`, saved there atomically. A stale
        or truncated file is rebuilt, never trusted."""
        if os.path.exists(path):
            try:
                return cls.from_state(torch.load(path, weights_only=True), meta)
            except Exception:  # a stale or truncated cache file is rebuilt, never trusted
                os.remove(path)
        d = build()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_atomic(d.to_state(), path)
        return d
