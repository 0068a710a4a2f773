"""What the kit shows: pictures (keypoints and skeleton on an image, heatmap overlays, grids of samples; matplotlib)
and result tables (Markdown + CSV)."""
import csv
import io
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


def short(text, n=22):
    """`text` cut to n characters (an ellipsis marks the cut), for titles."""
    return text if len(text) <= n else text[:n - 1] + "…"


def png(fig, dpi=100):
    """PNG bytes of a figure at its own size (figsize x dpi pixels, so a panel can show it unscaled); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return buf.getvalue()


def detail_figure(img, xy, patch, heatmap, titles, size_px=(420, 160), dpi=100, title_pt=9):
    """Three panels of size_px (w, h) pixels: the crop (3, S, S) with a ring at xy (crop pixels), the patch around
    it, and the heatmap (h, w) over the crop; titles: one per panel."""
    fig, ax = _plt().subplots(1, 3, figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    ax[0].imshow(_np_image(img))
    ax[0].scatter([xy[0] - 0.5], [xy[1] - 0.5], s=60, facecolors="none", edgecolors="yellow")
    ax[1].imshow(_np_image(patch))
    heatmap_overlay(ax[2], img, heatmap)
    for a, title in zip(ax, titles):
        a.set_axis_off()
        a.set_title(short(title), fontsize=title_pt)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.84, wspace=0.06)
    return fig


def thumbnails_figure(data, indices, titles, size_px=(420, 230), dpi=100, title_pt=9, rows=2, cols=4):
    """Up to rows x cols crops of a KeypointData with their ground truth, in size_px (w, h) pixels."""
    fig, axes = _plt().subplots(rows, cols, figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i, title in zip(axes.flat, indices, titles):
        keypoints(ax, data.images[i], data.keypoints[i], data.meta, size=6)
        ax.set_title(short(title, 12), fontsize=title_pt)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.25)
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
