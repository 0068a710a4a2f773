# %% [markdown]
# # 01 · Data, keypoints, heatmaps and label splits
#
# This notebook looks at what the networks see and at the tools every later lesson uses:
# the embedded dataset, the crops around each animal, Gaussian heatmaps and how they are decoded, the
# perspective warps g(·, s) of the unsupervised losses, PCK, and the label splits of the paper's experiments.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
out_dir = None        # None: results/01_data_and_splits/

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from kpsemi import config, course, data, draw
from kpsemi.data import geometry, splits
from kpsemi.data.synthetic import animal, writer
from kpsemi.method import heatmaps, metrics, warp
from kpsemi.repro import report

cfg = config.get(preset)
out = report.notebook_dir("01_data_and_splits", out_dir)

# %% [markdown]
# ## The embedded dataset
# Rendered 3-D quadrupeds: 8 species differing in proportions, colour and coat pattern, seen from a random
# yaw/tilt/roll, at random scale and position, on textured, cluttered backgrounds with distractor shapes, sometimes
# a second (unannotated) animal behind, occluders in front, or pushed over the image border. Keypoint visibility
# is *true*: 2 = the pixel shows the body part, 1 = hidden (by the body itself, another animal or an occluder),
# 0 = outside the image. `python -m kpsemi data synth --out DIR` writes the same images as COCO keypoints JSON.

# %%
scfg = writer.SynthConfig.from_size(cfg.synth_size)
fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
for i, ax in enumerate(axes.flat):
    img, anns = writer.render_sample(scfg, "train", i)
    ax.imshow(img)
    for a in anns:
        kp = a["keypoints"]
        ax.scatter(kp[kp[:, 2] == 2, 0], kp[kp[:, 2] == 2, 1], s=12, c="lime")
        ax.scatter(kp[kp[:, 2] == 1, 0], kp[kp[:, 2] == 1, 1], s=12, c="red")
        ax.set_title(f"{animal.SPECIES_NAMES[a['category_id'] - 1]}  " +
                     " ".join(k for k, v in a["attributes"].items() if v), fontsize=8)
    ax.set_axis_off()
fig.suptitle("full images: green = visible, red = hidden keypoints; title = species and attributes")
plt.tight_layout()
plt.show()
print(len(animal.KEYPOINTS), "keypoints:", ", ".join(animal.KEYPOINTS))
print("left/right pairs:", [(animal.KEYPOINTS[a], animal.KEYPOINTS[b]) for a, b in animal.FLIP_PAIRS])

# %% [markdown]
# ## Crops: one sample format for every dataset
# Every dataset (embedded, LSP, MPII, CUB, ATRW, your COCO or DeepLabCut data) becomes the same thing: a square
# crop of side 1.25 × the box's longer side, resized to the network input, with keypoints (K, 3) in crop pixels,
# the box, and meta (id, class, attributes).

# %%
train = data.load("synthetic", "train", cfg.input_size, synth_size=cfg.synth_size, progress=False)
val = data.load("synthetic", "val", cfg.input_size, synth_size=cfg.synth_size, progress=False)
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
v = train.keypoints[..., 2]
stats = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "keypoints": train.meta.num_keypoints,
         "classes": len(train.meta.classes), "visible_percent": 100 * float((v == 2).float().mean()),
         "hidden_percent": 100 * float((v == 1).float().mean()),
         "outside_percent": 100 * float((v == 0).float().mean())}
print(draw.markdown([{k: round(x, 1) if isinstance(x, float) else x for k, x in stats.items()}]))
fig = draw.grid(train, range(12), cols=6, title=f"training crops at {cfg.input_size} px (hollow = hidden)")
plt.show()

# %% [markdown]
# ## Heatmaps
# The network predicts one heatmap per keypoint at 1/4 of the input resolution. The target is a Gaussian
# $h_i(p) = \exp(-\|p - \mu_i\|^2 / 2\sigma^2)$ around the keypoint (the paper: σ = 2 at 64×64 for 256×256
# inputs); a keypoint that is not labeled gets an empty target and zero weight in the loss. Decoding takes the
# arg-max and refines it to sub-pixel precision with a parabola through the log-heatmap — exact for a Gaussian.

# %%
b = train.batch(torch.arange(4))
hm = heatmaps.render(b["keypoints"], (cfg.input_size // cfg.stride,) * 2, cfg.stride, cfg.sigma)
dec, _ = heatmaps.decode(hm, cfg.stride)
lab = b["keypoints"][..., 2] > 0
decode_error = float((dec - b["keypoints"][..., :2]).norm(dim=-1)[lab].max())
print(f"largest decoding error of the targets: {decode_error:.4f} input pixels")
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for i, ax in enumerate(axes):
    draw.heatmap_overlay(ax, b["image"][i], hm[i], title=f"all {hm.shape[1]} target heatmaps")
plt.show()

# %% [markdown]
# ## The perspective warp g(·, s)
# TE and TI compare an image with a warped copy g(x, s). The warps are random homographies that move each image
# corner by a bounded amount (after Moskvyak & Maire 2017, no extreme warps), applied batched on any device to
# images, heatmaps and keypoints with the same matrix. The check below: warping the keypoints agrees with warping
# their heatmaps and decoding.

# %%
g = torch.Generator().manual_seed(0)
H = warp.random_homography(4, cfg.g_corner, cfg.g_rotation, generator=g)
x2 = geometry.warp(b["image"], H)
kp2 = geometry.warp_points(b["keypoints"], H, (cfg.input_size, cfg.input_size))
big = heatmaps.render(b["keypoints"] * torch.tensor([4.0, 4.0, 1.0]), (cfg.input_size,) * 2, 4, 2.0)
dec2, _ = heatmaps.decode(geometry.warp(big, H), 4)
ok = kp2[..., 2] > 0
warp_agreement = float((dec2 / 4 - kp2[..., :2]).norm(dim=-1)[ok].max())
print(f"keypoints warped directly vs via their heatmaps: max difference {warp_agreement:.2f} px")
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for i in range(4):
    draw.keypoints(axes[0, i], b["image"][i], b["keypoints"][i], train.meta, title="x")
    draw.keypoints(axes[1, i], x2[i], kp2[i], train.meta, title="g(x, s)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## PCK
# A predicted keypoint is correct when it lies within α·l of the truth, l = the longer side of the object's box
# (PCK@0.1, the paper's metric for LSP, CUB and ATRW) or 0.6 × the head-box diagonal (PCKh@0.5 for MPII).
# A worked example: box side 100 px, so the threshold is 10 px; errors 5, 10 and 12 px give 2 hits of 3.

# %%
gt = torch.tensor([[[50.0, 50, 2], [20, 20, 2], [80, 80, 2]]])
pred = torch.tensor([[[55.0, 50], [26, 28], [92, 80]]])
r = metrics.pck(pred, gt, torch.tensor([100.0]), alpha=0.1)
print(f"PCK@0.1 = {r.mean:.1f} %, per keypoint {r.per_keypoint}")

# %% [markdown]
# ## Label splits
# Each experiment keeps the labels of a random 5/10/20/50/100 % of the training set (three seeded repeats) and
# treats the rest as unlabeled. The subsets are nested (5 % ⊂ 10 % ⊂ …) and written once to `data/splits/`, so
# every run of every table uses the same images. For the unlabeled-amount study (Table 3) the labels stay at 5 %
# and 10/20/50/100 % of the unlabeled pool are used.

# %%
sp = splits.get(train.meta.name, train.ids)
rows = [{"labeled": f"{f:.0%}", **{f"seed {s}": len(sp.labeled(f, s)) for s in splits.SEEDS}}
        for f in splits.FRACTIONS]
print(draw.markdown(rows))
nested = all(set(sp.labeled(a, 0).tolist()) <= set(sp.labeled(b_, 0).tolist())
             for a, b_ in zip(splits.FRACTIONS, splits.FRACTIONS[1:]))
pool = [len(sp.unlabeled(0.05, 0, u)) for u in splits.UNLABELED_FRACTIONS]
print("nested:", nested, "| unlabeled pool sizes at 5 % labels:", pool)
fig, ax = plt.subplots(figsize=(6, 2.6))
cls = train.cls.numpy()
for f in (0.05, 0.2, 1.0):
    ax.hist(cls[sp.labeled(f, 0)], bins=np.arange(len(train.meta.classes) + 1) - 0.5, alpha=0.5, label=f"{f:.0%}",
            density=True)
ax.set_xticks(range(len(train.meta.classes)), train.meta.classes, fontsize=7)
ax.legend()
ax.set_title("species in the labeled subsets (seed 0)")
plt.show()

# %% [markdown]
# ## Exercise · render the heatmaps
# Write `my_heatmap(kp, size, stride, sigma)`: for keypoints `kp` (B, K, 3) = (x, y, v) in input pixels, the
# Gaussian targets (B, K, h, w) of peak 1 on a heatmap of `size` = (h, w). Heatmap pixel j covers input pixels
# [j·stride, (j + 1)·stride), so a keypoint at x sits at heatmap index x / stride − 0.5; a keypoint with v = 0
# gets an all-zero map.
# The checker runs it on a case computed by hand, then on random inputs against `heatmaps.render`, and prints one
# line: PASS, or FAIL with the case and what is wrong. `course.show("heatmap")` repeats the task;
# `print(course.solution("heatmap"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_heatmap(kp, size, stride=4, sigma=2.0):
    ...                                       # your code here: return a (B, K, h, w) tensor


course.check("heatmap", my_heatmap)

# %%
report.record({**stats, "decode_error_px": decode_error, "warp_agreement_px": warp_agreement,
               "splits_nested": int(nested), "labeled_5_percent": len(sp.labeled(0.05, 0))},
              "01_data_and_splits", out_dir, cfg.preset)
