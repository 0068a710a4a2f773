"""Frames to label next: the frames of a video (or images) where a trained model is least sure — the
active-learning step DeepLabCut and SLEAP users do by hand (predict, look, label the worst frames, retrain).

Two measures per frame, from `predict.predict`:

- peak: the mean heatmap peak over keypoints (the CSV's likelihood); low means unsure;
- disagreement: the crop is also seen at scales 0.8 and 1.2 and, when the keypoints have left/right twins,
  flipped — the views of PL's ensemble (pseudo.view_heatmaps) — and each keypoint's predictions under all views
  are compared: the root-mean-square distance from their mean, averaged over keypoints, in original pixels and in
  percent of the box. High means the prediction depends on how the frame is looked at.

The worst frames by one measure are picked at least `min_gap` frames apart (neighbouring video frames are near
duplicates) and written as frames_to_label.csv, a contact sheet frames_to_label.png, the frames themselves as PNG
files under frames_to_label/ (a video's; images already are files), and both measures over all frames
(frame_scores.csv, frame_scores.png).
"""
import csv
import os

import numpy as np
import torch
from PIL import Image

from kpsemi.baselines import pseudo
from kpsemi.data import video as V
from kpsemi.method import heatmaps

MEASURES = ("disagreement", "peak")


@torch.no_grad()
def spread(model, x, xy, meta, stride=4, device="cpu", amp=True):
    """(B, K) root-mean-square distance, in crop pixels, of each keypoint's predictions under the ensemble views
    of crops x (B, 3, S, S) from their mean; xy (B, K, 2) are the plain view's predictions (crop pixels)."""
    pts = [xy.to(device)]
    for _, h in pseudo.view_heatmaps(model, x, meta, pseudo.SCALES, device, amp, identity=False):
        pts.append(heatmaps.decode(h, stride)[0])
    p = torch.stack(pts)                                             # (V, B, K, 2)
    return (p - p.mean(0)).pow(2).sum(-1).mean(0).sqrt().cpu()


def pick(badness, k, min_gap=1):
    """Positions of the k worst frames (highest badness first), each at least min_gap positions away from the
    frames picked before it."""
    chosen = []
    for i in np.argsort(-np.asarray(badness, dtype=float), kind="stable"):
        if len(chosen) == k:
            break
        if all(abs(int(i) - j) >= min_gap for j in chosen):
            chosen.append(int(i))
    return chosen


def badness(rows, by):
    """Per frame, higher = less sure: the spread in % of the box, or minus the mean peak."""
    return [r[4] if by == "disagreement" else -r[2] for r in rows]


def write(out, src, rows, kps, k, by, meta, pcutoff=0.5):
    """Pick the k frames to label among `rows` [(index, name, mean peak, spread px, spread %)] with predictions
    kps (N, K, 3) of a predict.Source and write the files listed above; returns the picked rows as dicts."""
    with open(os.path.join(out, "frame_scores.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "name", "mean_peak", "spread_px", "spread_percent"])
        w.writerows([[i, n, f"{p:.4f}", f"{s:.3f}", f"{sp:.3f}"] for i, n, p, s, sp in rows])
    gap = max(1, len(rows) // (4 * k)) if src.kind == "video" else 1
    picks = pick(badness(rows, by), k, gap)
    images = {it.index: it.image for it in src.items(only=set(picks))}
    folder = os.path.join(out, "frames_to_label")
    flagged = []
    for rank, i in enumerate(picks, 1):
        index, name, peak, sp, pct = rows[i]
        file = src.records[i][1] if src.records else os.path.join(folder, f"img{index:05d}.png")
        if not src.records:
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(images[index]).save(file)
        flagged.append({"rank": rank, "index": index, "name": name, "mean_peak": round(peak, 4),
                        "spread_px": round(sp, 3), "spread_percent": round(pct, 3), "file": file})
    with open(os.path.join(out, "frames_to_label.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flagged[0]) if flagged else ["rank"])
        w.writeheader()
        w.writerows(flagged)
    contact_sheet(flagged, images, kps, meta, pcutoff, by).savefig(os.path.join(out, "frames_to_label.png"), dpi=100)
    timeline(rows, picks, src.stem).savefig(os.path.join(out, "frame_scores.png"), dpi=100)
    return flagged


def contact_sheet(flagged, images, kps, meta, pcutoff, by, cols=4):
    """A figure of the flagged frames with their predictions (hollow circles: likelihood below pcutoff)."""
    from matplotlib.figure import Figure
    rows = max(1, (len(flagged) + cols - 1) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, flagged):
        kp = kps[r["index"]]
        ax.imshow(V.draw(images[r["index"]], kp[:, :2], kp[:, 2], meta.skeleton, pcutoff))
        ax.set_title(f"#{r['rank']} {r['name']}: peak {r['mean_peak']:.2f}, spread {r['spread_px']:.1f} px",
                     fontsize=8)
    fig.suptitle(f"frames to label next (least sure by {by})")
    fig.tight_layout()
    return fig


def timeline(rows, picks, title):
    """Mean peak and view disagreement over the frames, the picked frames marked."""
    from matplotlib.figure import Figure
    idx = np.array([r[0] for r in rows])
    fig = Figure(figsize=(10, 3))
    ax = fig.subplots()
    ax.plot(idx, [r[2] for r in rows], lw=0.8, color="tab:blue", label="mean peak (likelihood)")
    ax.set_xlabel("frame" if len(rows) else "")
    ax.set_ylabel("mean peak", color="tab:blue")
    sp = np.array([r[4] for r in rows])
    if np.isfinite(sp).any():
        ax2 = ax.twinx()
        ax2.plot(idx, sp, lw=0.8, color="tab:orange")
        ax2.set_ylabel("view disagreement (% of box)", color="tab:orange")
    for i in picks:
        ax.axvline(rows[i][0], color="red", lw=0.8, alpha=0.6)
    ax.set_title(f"{title}: per-frame confidence; red: frames to label", fontsize=9)
    fig.tight_layout()
    return fig
