# %% [markdown]
# # 09 · Weakly supervised keypoints from a classifier
#
# Every other notebook needs *some* keypoint labels. Shan (*Weakly supervised keypoint detection*, seed 003)
# asks whether **class labels alone** are enough: to tell a zebra from a cow a network has to look at something,
# and the places it looks at may well be keypoints. The recipe:
#
# 1. train an ordinary image classifier f on the species labels — it never sees a keypoint;
# 2. **coarse scale, occlusion sensitivity** (Zeiler & Fergus): cover a patch b of the image x with random
#    colours, h_g(x, b), and record how much the predicted class c loses,
#    $d(x, b) = \max(f_c(x) - f_c(h_g(x, b)), 0)$ with f the softmax probabilities;
# 3. **fine scale, guided backpropagation** (Springenberg et al.): the gradient of the class score with respect to
#    the pixels, where every ReLU passes a gradient backwards only if its input was positive *and* the gradient
#    is positive, $R^l_i = (f^l_i > 0)\,(R^{l+1}_i > 0)\,R^{l+1}_i$;
# 4. combine both maps through sigmoids into a keypoint log-likelihood, non-maximum suppression, keep the top
#    40 % of the peaks by confidence, refine each to sub-pixel precision with the Förstner operator.
#
# Then we do what the seed could only show qualitatively: score the detections against the embedded set's true
# keypoints, against random points, and build its "salient feature" table.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
arch = None           # classifier; None: from the preset (vgg_small on CPU presets, vgg19 for paper), or resnet18, ...
keep = 0.4            # fraction of the NMS peaks kept, by confidence (the seed: 40 %)
alpha = 0.1           # a detection is right within alpha x the box's longer side of a visible keypoint
out_dir = None        # None: results/09_weak_supervision/

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch

from kpsemi import course, draw
from kpsemi.repro import report
from kpsemi.weak import classifier, pipeline, saliency

cfg = pipeline.get_config(preset, arch=arch, keep=keep, alpha=alpha)
pipeline.set_threads(cfg)
out = report.notebook_dir("09_weak_supervision", out_dir)
train, val, test = pipeline.load_data(cfg, progress=False)
print(f"preset {cfg.preset}: {cfg.arch} at {cfg.input_size} px, {cfg.steps} training steps; "
      f"{len(train)} / {len(val)} / {len(test)} crops; results in {out}")
first = [int((test.cls == c).nonzero()[0]) for c in range(len(test.meta.classes)) if (test.cls == c).any()]
fig = draw.grid(test, first, cols=len(first), title="one test crop per species (the classifier sees only the name)")
plt.show()

# %% [markdown]
# ## 1 · A classifier that never sees a keypoint
# A torchvision VGG (the seed used VGG-E = VGG-19; `paper` preset) or ResNet behind ImageNet normalisation.
# ImageNet weights come through torchvision's weights API when they can be had; offline, the network trains from
# scratch and a warning says so. On the CPU presets `vgg_small` — torchvision's VGG class with a narrow layer
# list (16-32-64-128 channels, 4 pools, batch norm) — trains in a few minutes. Plain cross-entropy on the species,
# with flips and small rotations / scalings. Species differ in coat colour and pattern and in proportions, but a
# quarter of the animals wear a random coat, so colour alone cannot do it all.

# %%
model, history, _ = pipeline.classifier_for(cfg, train, val, pipeline.classifier_dir(cfg, out))
acc = classifier.accuracy(model, test)
pred = classifier.predict(model, test)
n_cls = len(test.meta.classes)
confusion = torch.zeros(n_cls, n_cls, dtype=torch.long).index_put_((test.cls, pred), torch.ones(len(test),
                                                                   dtype=torch.long), accumulate=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].set_axis_off()
if history:
    axes[0].set_axis_on()
    steps = [h["step"] for h in history]
    axes[0].plot(steps, [h["val_acc"] for h in history], "o-", label="validation accuracy %")
    axes[0].plot(steps, [100 * h["loss"] / history[0]["loss"] for h in history], "s--",
                 label="training loss (% of the first)")
    axes[0].set_xlabel("step"), axes[0].legend(), axes[0].set_title("training")
row_share = confusion.float() / confusion.sum(1, keepdim=True).clamp_min(1)
axes[1].imshow(row_share, cmap="Blues", vmin=0, vmax=1)
axes[1].set_xticks(range(n_cls), test.meta.classes, rotation=60), axes[1].set_yticks(range(n_cls), test.meta.classes)
axes[1].set_xlabel("predicted"), axes[1].set_ylabel("true"), axes[1].set_title(f"test accuracy {acc:.1f} %")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · Coarse scale: occlusion sensitivity
# The occluder is `patch` pixels square and moves by `stride` (the seed: 16 and 8 at 224 px; scaled to the input
# here). Every position is one occluded copy of the image, and all copies of several images go through the
# network in large batches: (⌈(S − patch) / stride⌉ + 1)² forward passes per image. A pixel's value is the mean
# drop over the windows that cover it. The seed fills the occluder with **random colours** rather than a plain
# patch, so the network does not react to the new edges of a grey square; with a fixed fill (and without the
# clamp at 0) our `saliency.occlusion` equals captum's `Occlusion` exactly (tests/weak/test_weak.py).

# %%
show = first[:4]
x = test.batch(show)["image"]
occ_rand, drops, target = saliency.occlusion(model, x, None, cfg.patch, cfg.stride, "random",
                                             generator=torch.Generator().manual_seed(0))
occ_grey, _, _ = saliency.occlusion(model, x, target, cfg.patch, cfg.stride, 0.5)
masks = saliency.occluder_masks(cfg.input_size, cfg.patch, cfg.stride)         # (positions, S, S)
noise = torch.rand(x[0].shape, generator=torch.Generator().manual_seed(1))
worst = torch.stack([torch.where(masks[int(d.argmax())], noise, xi) for d, xi in zip(drops, x)])  # worst occluder
with torch.no_grad():
    p_before, p_after = (model(v).softmax(1).gather(1, target[:, None])[:, 0] for v in (x, worst))
fig, axes = plt.subplots(len(show), 5, figsize=(11, 2.3 * len(show)))
for i, row in enumerate(axes):
    draw.keypoints(row[0], x[i], test.keypoints[show[i]], test.meta, title=f"predicted: {test.meta.classes[target[i]]}")
    row[1].imshow(worst[i].permute(1, 2, 0))
    row[1].set_title(f"worst occluder: f_c {p_before[i]:.2f} -> {p_after[i]:.2f}", fontsize=8)
    row[2].imshow(drops[i], cmap="jet")
    draw.heatmap_overlay(row[3], x[i], occ_rand[i], title="map, random-colour fill" if i == 0 else None)
    draw.heatmap_overlay(row[4], x[i], occ_grey[i], title="map, grey fill" if i == 0 else None)
    for ax in row[1:3]:
        ax.set_axis_off()
axes[0, 2].set_title("drop d(x, b) per position", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3 · Fine scale: guided backpropagation
# `saliency.guided_backprop` swaps every `nn.ReLU` of the network for a ReLU whose backward pass is
# $(f > 0)(R > 0)R$ (a custom autograd function), takes the gradient of the predicted class's score, and swaps
# them back; it equals captum's `GuidedBackprop` (tests). Guiding keeps only evidence *for* the class, so the map
# is sparser than the plain gradient (middle) and follows the animal more closely; at 64 px, from a small network
# trained from scratch, both stay grainy — which is why the detector box-filters G before looking for peaks.

# %%
grad_plain, _ = saliency.input_gradient(model, x, target)
grad_guided, _ = saliency.guided_backprop(model, x, target)
fig, axes = plt.subplots(len(show), 3, figsize=(7, 2.3 * len(show)))
for i, row in enumerate(axes):
    row[0].imshow(x[i].permute(1, 2, 0)), row[0].set_axis_off()
    for ax, g, name in ((row[1], grad_plain, "plain gradient"), (row[2], grad_guided, "guided backprop")):
        ax.imshow(saliency.normalise(saliency.gradient_map(g[i:i + 1]), 0.99)[0], cmap="gray"), ax.set_axis_off()
        ax.set_title(name if i == 0 else None, fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · From two maps to keypoints
# Both maps are scaled to [0, 1] (Ô = O / max O; Ĝ = the box-filtered G over its 99th percentile, clipped) and
# turned into one **log-likelihood** by a linear combination of log-sigmoids,
#
# $$\ell(p) = \lambda \log\sigma\big(k(\hat O(p) - \tau_o)\big) + (1 - \lambda)\log\sigma\big(k(\hat G(p) - \tau_g)\big),$$
#
# so the confidence $e^{\ell(p)}$ is a weighted geometric mean of two sigmoids: high only where both cues agree.
# The coarse term is a soft gate (τ_o = 0.1: "on the part of the image that matters at all"), the fine term
# places the point (τ_g = 0.5), λ = 0.3, k = 10. Then:
#
# - **NMS** — max-pool: a pixel is a peak when it is the maximum of its (2r + 1)² window; ties on plateaus are
#   thinned by `torchvision.ops.batched_nms` on small boxes; at most 25 peaks;
# - **keep the top 40 %** of each image's peaks by confidence;
# - **Förstner** — the least-squares point closest to all lines through the window's pixels with normals along
#   the image gradient, $\hat x = A^{-1}b$ with $A = \sum_w \nabla I \nabla I^\top$ and
#   $b = \sum_w \nabla I \nabla I^\top x_i$ (a corner is where the edges meet). A singular A (a straight edge, a
#   flat window; Förstner's roundness 4 det A / tr² A < 0.1) or an estimate outside the window keeps the pixel.
#
# The seed's Fig. 2, on the same crops: the input, the occlusion map, guided backpropagation, the detections
# (red, the hollow ones are the peaks dropped by the 40 % rule) and the ground truth.

# %%
det = pipeline.detect(model, x, cfg, torch.Generator().manual_seed(0))
fig, axes = plt.subplots(len(show), 5, figsize=(11, 2.3 * len(show)))
for i, row in enumerate(axes):
    row[0].imshow(x[i].permute(1, 2, 0)), row[0].set_axis_off()
    draw.heatmap_overlay(row[1], x[i], det["occlusion"][i])
    row[2].imshow(saliency.normalise(det["gbp"][i:i + 1], 0.99)[0], cmap="gray"), row[2].set_axis_off()
    row[3].imshow(x[i].permute(1, 2, 0)), row[3].set_axis_off()
    dropped = det["peaks"][i][~det["keep"][i] & torch.isfinite(det["confidence"][i]) & (det["confidence"][i] > 0)]
    kept = det["xy"][i][det["keep"][i]]
    row[3].scatter(dropped[:, 0] - 0.5, dropped[:, 1] - 0.5, s=14, facecolors="none", edgecolors="red", lw=0.8)
    row[3].scatter(kept[:, 0] - 0.5, kept[:, 1] - 0.5, s=16, c="red")
    draw.keypoints(row[4], x[i], test.keypoints[show[i]], test.meta, colours=["lime"] * test.meta.num_keypoints)
for ax, t in zip(axes[0], ("input", "occlusion", "guided backprop", "detections", "ground truth")):
    ax.set_title(t, fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5 · How good are these keypoints?
# Over the first `eval_images` test crops: **precision** = detections within α·l of some *visible* true keypoint
# (l = the box's longer side, α = 0.1 as PCK@0.1), **recall** = visible keypoints with a detection within α·l.
# The **random baseline** puts as many points per image, uniformly **inside the object's box** (the harder
# baseline: the animal fills most of it); uniformly in the whole crop is easier and shown too. The same maps
# also answer an ablation: only the coarse map (λ = 1), only the fine one (λ = 0), and both.

# %%
maps = pipeline.saliency_maps(model, test, cfg)
n = len(maps["target"])
gray = test.images[:n].float().mean(1) / 255
dets = pipeline.keypoints(maps, gray, cfg)
metrics, extra = pipeline.score(dets, test, cfg)
variants = {"coarse only (λ = 1)": replace(cfg, lam=1.0), "fine only (λ = 0)": replace(cfg, lam=0.0),
            f"both (λ = {cfg.lam})": cfg}
rows = []
for name, c in variants.items():
    m = metrics if c is cfg else pipeline.score(pipeline.keypoints(maps, gray, c), test, c)[0]
    rows.append({"detector": name, "precision %": m["precision"], "recall %": m["recall"],
                 "random P (box) %": m["random_precision"], "random R (box) %": m["random_recall"],
                 "per image": m["detections_per_image"]})
rows.append({"detector": "both, without Förstner", "precision %": metrics["precision_unrefined"],
             "recall %": metrics["recall_unrefined"], "random P (box) %": metrics["random_precision"],
             "random R (box) %": metrics["random_recall"], "per image": metrics["detections_per_image"]})
print(f"{n} test crops; classifier right on {100 * float((maps['target'] == test.cls[:n]).float().mean()):.1f} % "
      f"of them; random points in the whole crop: precision {metrics['random_precision_crop']:.1f} %, recall "
      f"{metrics['random_recall_crop']:.1f} %")
print(draw.markdown(rows))
fig, ax = plt.subplots(figsize=(9, 3.2))
pos = np.arange(len(rows))
ax.bar(pos - 0.3, [r["precision %"] for r in rows], 0.2, label="precision")
ax.bar(pos - 0.1, [r["random P (box) %"] for r in rows], 0.2, label="random precision", color="lightgray")
ax.bar(pos + 0.1, [r["recall %"] for r in rows], 0.2, label="recall")
ax.bar(pos + 0.3, [r["random R (box) %"] for r in rows], 0.2, label="random recall", color="darkgray")
ax.set_xticks(pos, [r["detector"] for r in rows]), ax.set_ylabel("%"), ax.legend(fontsize=7, ncol=4)
ax.set_ylim(0, 1.3 * max(max(r["precision %"], r["random P (box) %"]) for r in rows))
ax.set_title(f"weak keypoints vs random points in the box (alpha = {cfg.alpha})")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · The salient keypoint of each species
# The seed's table: for every detection that hits a keypoint, which keypoint type is it; per class, the most
# frequent type (the seed found "body", "bonnet" or "headlight" for car models). Rows of the picture are normalised
# to the species' matched detections.

# %%
hist = extra["histogram"]
print(draw.markdown(pipeline.salient_rows(metrics, hist, test.meta.classes)))
fig, ax = plt.subplots(figsize=(10, 3.6))
im = ax.imshow((hist.float() / hist.sum(1, keepdim=True).clamp_min(1)).numpy(), cmap="viridis")
fig.colorbar(im, ax=ax, fraction=0.03)
ax.set_xticks(range(test.meta.num_keypoints), test.meta.keypoints, rotation=60, fontsize=7)
ax.set_yticks(range(n_cls), test.meta.classes)
ax.set_title("share of each species' matched detections per keypoint type")
plt.tight_layout()
plt.show()

# %% [markdown]
# **What we measured** (demo preset, one run, 7.7 minutes wall on a 2-core CPU shared with other jobs, 2.5 minutes
# of CPU time: `vgg_small` trained from scratch for 300 steps reaches 70.9 % test accuracy; 120 test crops through
# the detector):
#
# | detector | precision % | recall % | random points in the box: P / R % |
# |---|---|---|---|
# | coarse only (λ = 1) | 27.1 | 6.7 | 37.1 / 10.0 |
# | fine only (λ = 0) | 50.5 | 40.9 | 36.0 / 28.7 |
# | both (λ = 0.3), the seed's pipeline | 47.2 | 35.4 | 35.9 / 24.7 |
# | both, without Förstner | 48.1 | 36.2 | 35.9 / 24.7 |
#
# - The weak keypoints beat as many random points in the box by about 11 points of precision and of recall
#   (random points anywhere in the crop: 19.9 % / 14.3 %). Class labels do carry keypoint information.
# - The occlusion map alone peaks in the middle of the body — the coat is what tells the species apart — and
#   lands far *below* random: the torso holds no keypoint. Guided backpropagation draws outlines, paws, heads and
#   tails and does all the localising; the coarse map, used as a soft gate, keeps points on the animal but here
#   costs a few points against guided backprop alone (as on the validation crops used to choose λ and τ).
# - Förstner snaps points to image corners, which in a striped or spotted coat are as often pattern as keypoints:
#   it costs about 1 point of precision here.
# - The salient keypoint is a paw or knee for five species (tiger, cheetah, zebra, wolf, cow) and the withers for
#   bear, giraffe and panther, each with only 11–25 % of the species' matched detections — our version of the
#   seed's "body" and "headlight": the network finds the parts it needs for *its* task, and those are only partly
#   the parts we would label.

# %% [markdown]
# ## Exercise · write PCK
# Write `my_pck(pred, gt, norm, alpha)`: PCK@alpha in percent, the measure of section 5, for predictions
# `pred` (N, K, 2), ground truth `gt` (N, K, 3) = (x, y, v) and the box side `norm` (N,): a labeled keypoint
# (v > 0) is correct when it lies at most alpha × l from the truth; unlabeled keypoints count neither way.
# The checker runs it on a case computed by hand, then on random inputs against `metrics.pck`, and prints one line:
# PASS, or FAIL with the case and what is wrong. `course.show("pck")` repeats the task;
# `print(course.solution("pck"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_pck(pred, gt, norm, alpha=0.1):
    ...                                       # your code here: return a percentage


course.check("pck", my_pck)

# %%
report.record({"classifier_accuracy": acc, "precision": metrics["precision"], "recall": metrics["recall"],
               "random_precision": metrics["random_precision"], "random_recall": metrics["random_recall"],
               "precision_unrefined": metrics["precision_unrefined"],
               "precision_coarse_only": rows[0]["precision %"], "precision_fine_only": rows[1]["precision %"],
               "detections_per_image": metrics["detections_per_image"], "salient": metrics["salient"]},
              "09_weak_supervision", out_dir, cfg.preset)
