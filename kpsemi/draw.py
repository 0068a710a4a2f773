"""What the kit shows: pictures (keypoints and skeleton on an image, heatmap overlays, grids of samples; matplotlib)
and result tables (Markdown + CSV)."""
import csv
import math

import matplotlib

import numpy as np
import torch


def _plt():
    import matplotlib.pyplot as plt
    return plt


def _np_image(img):
    """(3, H, W) or (H, W, 3) tensor/array, uint8 or float in [0, 1] -> (H, W, 3) array for imshow."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        if img.dim() == 3 and img.shape[0] in (1, 3):
            img = img.permute(1, 2, 0)
        img = img.numpy()
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 1)
    return img


def keypoint_colours(k):
    return matplotlib.colormaps["tab20"](np.arange(k) % 20)


def keypoints(ax, img, kp, meta=None, skeleton=None, colours=None, marker="o", size=18, labels=False,
              show_hidden=True, title=None):
    """Image with keypoints (K, 2|3) and skeleton; hidden (v = 1) points drawn hollow, v = 0 not drawn."""
    ax.imshow(_np_image(img))
    kp = np.asarray(kp.detach().cpu() if isinstance(kp, torch.Tensor) else kp, dtype=float)
    if kp.shape[1] == 2:
        kp = np.concatenate([kp, np.full((len(kp), 1), 2.0)], 1)
    skeleton = skeleton if skeleton is not None else (meta.skeleton if meta else [])
    colours = colours if colours is not None else keypoint_colours(len(kp))
    for a, b in skeleton:
        if kp[a, 2] > 0 and kp[b, 2] > 0:
            ax.plot(kp[[a, b], 0] - 0.5, kp[[a, b], 1] - 0.5, "-", color="white", lw=1.2, alpha=0.8)
    for i, (x, y, v) in enumerate(kp):
        if v == 0 or (v == 1 and not show_hidden):
            continue
        face = colours[i] if v == 2 else "none"
        ax.scatter([x - 0.5], [y - 0.5], s=size, marker=marker, facecolors=face, edgecolors=[colours[i]],
                   linewidths=1.2, zorder=3)
        if labels and meta is not None:
            ax.text(x + 1, y - 1, meta.keypoints[i], fontsize=6, color="white")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def heatmap_overlay(ax, img, hm, alpha=0.55, cmap="jet", title=None, vmax=None):
    """Image with a heatmap (h, w) (or (K, h, w), max over K) upsampled over it; colours from 0 to `vmax` (default:
    the map's own maximum)."""
    img = _np_image(img)
    hm = hm.detach().float().cpu() if isinstance(hm, torch.Tensor) else torch.as_tensor(hm, dtype=torch.float32)
    if hm.dim() == 3:
        hm = hm.max(0).values
    up = torch.nn.functional.interpolate(hm[None, None], size=img.shape[:2], mode="bilinear",
                                         align_corners=False)[0, 0].numpy()
    ax.imshow(img)
    ax.imshow(up, cmap=cmap, alpha=alpha, vmin=0, vmax=vmax if vmax is not None else max(1e-6, float(up.max())))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def grid(data, indices=None, cols=6, pred=None, title=None, size=2.2, labels=False):
    """Figure of samples of a KeypointData with ground truth (and predictions (N, K, 2) as crosses; row j of
    `pred` belongs to the j-th of `indices`)."""
    plt = _plt()
    indices = list(range(min(len(data), 2 * cols))) if indices is None else list(indices)
    rows = (len(indices) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j, (ax, i) in enumerate(zip(axes.flat, indices)):
        s = data[i]
        cls = s["meta"]["class"]
        name = data.meta.classes[cls] if 0 <= cls < len(data.meta.classes) else ""
        keypoints(ax, s["image"], s["keypoints"], data.meta, labels=labels, title=f"{s['meta']['id']} {name}")
        if pred is not None:
            p = np.asarray(pred[j])
            ax.scatter(p[:, 0] - 0.5, p[:, 1] - 0.5, marker="x", s=14, c=keypoint_colours(len(p)), zorder=4)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- tables -------------------------------------------------------------------------------------------------
def _fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def markdown(rows, columns=None):
    """A Markdown table from a list of dicts (columns: the keys of the first row, in order)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_table(rows, path_base, columns=None):
    """Write `path_base`.md and `path_base`.csv; returns the Markdown."""
    columns = columns or (list(rows[0]) if rows else [])
    md = markdown(rows, columns)
    with open(path_base + ".md", "w") as f:
        f.write(md + "\n")
    with open(path_base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return md
