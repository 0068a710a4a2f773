"""PCK@alpha (Yang & Ramanan; l = the box's longer side, paper alpha = 0.1) and PCKh@0.5 (l = 0.6 x head-box
diagonal, Andriluka et al.), per keypoint and averaged over all labeled keypoints, in percent.

A keypoint counts when the ground truth labels it (v > 0) and the prediction lies within alpha * l of it.

Two diagnostics tell *where* the misses are: `any_keypoint_pck` forgets which keypoint a prediction is for (a hit
is within alpha * l of any labeled keypoint of the sample: "found something, maybe the wrong one"), and
`twin_separation` compares how far apart the predictions of each left/right pair are with how far apart the true
keypoints are (0: both twins predicted on one spot). `wrong_keypoint_hits` splits the identity-free hits that PCK
misses into hits at the left/right twin and at other keypoints, and `crowding` says how often a neighbouring keypoint
lies within alpha * l anyway.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch


def box_norm(box):
    """PCK normaliser: the longer side of (.., 4) xywh boxes."""
    box = torch.as_tensor(box)
    return torch.maximum(box[..., 2], box[..., 3])


def head_norm(head_box):
    """PCKh normaliser: 0.6 x the diagonal of (.., 4) x1y1x2y2 head boxes."""
    hb = torch.as_tensor(head_box, dtype=torch.float64)
    return 0.6 * torch.hypot(hb[..., 2] - hb[..., 0], hb[..., 3] - hb[..., 1])


def hits(pred, gt, norm, alpha=0.1):
    """(correct (N, K) bool, labeled (N, K) bool) for predictions (N, K, 2) against gt (N, K, 3)."""
    pred, gt = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    norm = torch.as_tensor(norm, dtype=torch.float64)
    d = torch.linalg.norm(pred[..., :2] - gt[..., :2], dim=-1)
    labeled = gt[..., 2] > 0
    return (d <= alpha * norm[:, None]) & labeled, labeled


@dataclass
class PCK:
    mean: float                # percent of all labeled keypoints that are correct
    per_keypoint: list         # percent per keypoint type (NaN where a type is never labeled)
    count: int                 # labeled keypoints evaluated
    alpha: float

    def as_dict(self, names=None):
        per = {(names[k] if names else str(k)): v for k, v in enumerate(self.per_keypoint)}
        return {"mean": self.mean, "per_keypoint": per, "count": self.count, "alpha": self.alpha}


def gap_closed(supervised_low, method_low, supervised_high):
    """The share (%) of the gap between supervised training at few labels and at all labels that a method at few
    labels closes: 100 * (method - low) / (high - low); NaN when there is no gap (high == low)."""
    gap = supervised_high - supervised_low
    return 100.0 * (method_low - supervised_low) / gap if gap != 0 else float("nan")


def pck(pred, gt, norm, alpha=0.1):
    """PCK@alpha in percent. norm (N,) per-sample l (box_norm for PCK, head_norm for PCKh)."""
    ok, lab = hits(pred, gt, norm, alpha)
    n = int(lab.sum())
    per = (100.0 * ok.sum(0).double() / lab.sum(0).double()).tolist()  # NaN where never labeled
    mean = 100.0 * float(ok.sum()) / n if n else float("nan")
    return PCK(mean=mean, per_keypoint=[float(v) if np.isfinite(v) else float("nan") for v in per], count=n,
               alpha=alpha)


def pckh(pred, gt, head_box, alpha=0.5):
    """PCKh@alpha with head boxes (N, 4) x1y1x2y2."""
    return pck(pred, gt, head_norm(head_box), alpha)


def swap_rate(pred, gt, flip_pairs):
    """Left/right confusion in percent: over labeled keypoints of the (left, right) pairs whose twins are both
    labeled, how often the prediction lies closer to the twin's ground truth than to its own."""
    pred, gt = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    n, bad = 0, 0
    for a, b in flip_pairs:
        both = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
        for i, j in ((a, b), (b, a)):
            own = (pred[both, i] - gt[both, i, :2]).norm(dim=-1)
            twin = (pred[both, i] - gt[both, j, :2]).norm(dim=-1)
            bad += int((twin < own).sum())
            n += int(both.sum())
    return 100.0 * bad / n if n else float("nan")


def _distances(pred, gt, norm):
    """Distances (N, K pred, K gt) in units of the normaliser l from every prediction to every labeled keypoint of
    its sample (inf to unlabeled ones), and the labeled mask (N, K)."""
    pred, gt = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    norm = torch.as_tensor(norm, dtype=torch.float64)
    lab = gt[..., 2] > 0                                                            # (N, K)
    d = torch.linalg.norm(pred[:, :, None, :2] - gt[:, None, :, :2], dim=-1) / norm[:, None, None]
    return torch.where(lab[:, None, :], d, torch.full_like(d, math.inf)), lab


def any_keypoint_pck(pred, gt, norm, alpha=0.1):
    """PCK@alpha in percent without identity: a labeled keypoint counts when its prediction lies within alpha * l
    of *any* labeled keypoint of the same sample. PCK <= this; the difference is keypoints found at the wrong
    keypoint (left/right twins, front/back legs), the rest of the misses are far from every keypoint."""
    d, lab = _distances(pred, gt, norm)
    ok = (d.min(-1).values <= alpha) & lab
    n = int(lab.sum())
    return 100.0 * float(ok.sum()) / n if n else float("nan")


def wrong_keypoint_hits(pred, gt, norm, flip_pairs, alpha=0.1):
    """Where the hits of `any_keypoint_pck` that PCK does not count go, in percent of the labeled keypoints:
    {"total": any-keypoint PCK - PCK, "twin": found at its left/right twin, "other": at another keypoint,
    "near_own": of those, within 1.5 alpha * l of its own keypoint (a near miss that another keypoint close by
    caught), "pairs": {(predicted k, nearest true j): percent}}. A prediction goes to the labeled keypoint nearest
    to it."""
    d, lab = _distances(pred, gt, norm)
    own = d.diagonal(dim1=1, dim2=2)                                                # (N, K)
    wrong = (d.min(-1).values <= alpha) & (own > alpha) & lab
    n = int(lab.sum())
    if not n:
        return {"total": float("nan"), "twin": float("nan"), "other": float("nan"), "near_own": float("nan"),
                "pairs": {}}
    twin = {a: b for a, b in flip_pairs} | {b: a for a, b in flip_pairs}
    nearest = d.argmin(-1)                                                          # (N, K)
    pairs = {}
    for i, k in torch.nonzero(wrong).tolist():
        key = (k, int(nearest[i, k]))
        pairs[key] = pairs.get(key, 0) + 100.0 / n
    n_twin = sum(v for (k, j), v in pairs.items() if twin.get(k) == j)
    total = 100.0 * float(wrong.sum()) / n
    return {"total": total, "twin": n_twin, "other": total - n_twin,
            "near_own": 100.0 * float((wrong & (own <= 1.5 * alpha)).sum()) / n,
            "pairs": dict(sorted(pairs.items(), key=lambda kv: -kv[1]))}


def crowding(gt, norm, alpha=0.1):
    """The share (%) of labeled keypoints with another labeled keypoint of the same sample within alpha * l: where
    this is high, a prediction that misses its own keypoint often lands within reach of a neighbour, and
    any-keypoint PCK counts it."""
    gt = torch.as_tensor(gt, dtype=torch.float64)
    d, lab = _distances(gt[..., :2], gt, norm)
    d = d + torch.diag(torch.full((gt.shape[1],), math.inf, dtype=d.dtype))        # not the keypoint itself
    n = int(lab.sum())
    return 100.0 * float(((d.min(-1).values <= alpha) & lab).sum()) / n if n else float("nan")


def twin_separation(pred, gt, norm, flip_pairs):
    """(predicted, true) mean distance between the two keypoints of each left/right pair, in units of the
    normaliser l, over samples where both twins are labeled. A model that cannot tell left from right puts both
    heatmaps on the same spot: predicted ~ 0 while the true separation is not."""
    pred, gt = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    norm = torch.as_tensor(norm, dtype=torch.float64)
    p_sep, g_sep = [], []
    for a, b in flip_pairs:
        both = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
        p_sep.append((pred[both, a, :2] - pred[both, b, :2]).norm(dim=-1) / norm[both])
        g_sep.append((gt[both, a, :2] - gt[both, b, :2]).norm(dim=-1) / norm[both])
    if not sum(len(v) for v in p_sep):
        return float("nan"), float("nan")
    return float(torch.cat(p_sep).mean()), float(torch.cat(g_sep).mean())
