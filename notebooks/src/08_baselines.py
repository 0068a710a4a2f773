# %% [markdown]
# # 08 · The baselines: pseudo-labels, generation, and Seq-MT with attributes
#
# The paper's Table 1 compares the method with three older ways of using unlabeled images. All of them run here on
# the same network (KLN), the same augmentations, label subsets and schedule as the supervised and full rows:
#
# - **PL — pseudo-labels** (data distillation, Radosavovic et al. 2018). Train on the labeled images; predict every
#   unlabeled image with *multi-transform inference* (3 scales × {as is, flipped}, heatmaps mapped back and
#   averaged, left/right channels swapped for the flipped copies); keep a keypoint when its averaged heatmap peak
#   is ≥ 0.5 (half a perfect Gaussian peak) and an image when half of its keypoints are kept; retrain from scratch on
#   labeled + pseudo-labeled images. Not defined at 100 % labels.
# - **ELT** (Honari et al. 2018) — the inverse-warp consistency of notebook 04.
# - **Gen** (Jakab et al. 2018). The heatmaps of x become a *keypoint bottleneck*: soft-argmax coordinates drawn
#   as Gaussian maps. A decoder gets those maps and the appearance of a geometrically transformed copy x' = g(x)
#   and must reconstruct x — the geometry can only come from the keypoints. No ImageNet network is available
#   offline for a perceptual loss, so the reconstruction loss is L1 on pixels + L1 on image gradients, at two scales.
# - **Seq-MT** (Honari et al. 2018): landmarks by soft-argmax feed an attribute classifier (the embedded set's
#   per-image attributes: facing left, paw raised, head down, tail up); the attribute loss reaches the landmark
#   network on *every* image, also those without keypoint labels. Honari's ELT on the landmark coordinates
#   (`elt_lm`) combines with it: the rows L, L+A, L+ELT, L+ELT+A of the seed's HGR1 table.
#
# The same runs are rows of `python -m kpsemi reproduce --table 1` (supervised, PL, ELT, Gen, ours) and
# `--table seqmt`.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05
split_seed = 0
out_dir = None        # None: results/08_baselines/

# %%
import matplotlib.pyplot as plt
import torch

from kpsemi import config, course, data, draw, runs
from kpsemi.baselines import pseudo
from kpsemi.data import geometry
from kpsemi.method import heatmaps, losses, models, warp
from kpsemi.repro import report

cfg = config.get(preset)
out = report.notebook_dir("08_baselines", out_dir)


def get(**kw):
    return runs.cached(config.get(cfg.preset, labeled=labeled, split_seed=split_seed, **kw))


# %% [markdown]
# ## Table 1 rows at one label fraction
# PL reuses the supervised run as its teacher (identical configuration, so the cached run is shared).

# %%
rows = {"supervised": dict(losses=("sup",)), "PL": dict(losses=("sup",), method="pl"),
        "ELT": dict(losses=("sup", "elt")), "Gen": dict(losses=("sup", "gen")),
        "ours (SC+TE+TI)": dict(losses=("sup", "sc", "te", "ti"))}
res, dirs = {}, {}
for name, kw in rows.items():
    res[name], dirs[name] = get(**kw)
pl = res["PL"]
print(draw.markdown([{"method": n, "test PCK@0.1": round(m["test_pck"], 2), "val PCK@0.1": round(m["val_pck"], 2),
                      "steps": m["steps"], "train s": round(m["seconds"])} for n, m in res.items()]))
print(f"PL: {pl['n_pseudo_images']} of {res['ours (SC+TE+TI)']['n_unlabeled']} unlabeled images pseudo-labeled, "
      f"{pl['pseudo_keypoints_kept']} keypoints kept; their PCK@0.1 against the hidden truth: "
      f"{pl['pseudo_label_pck']:.1f} %")
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(res), [m["test_pck"] for m in res.values()], color=["#999", "#1f77b4", "#2ca02c", "#9467bd", "#d62728"])
ax.invert_yaxis()
ax.set_xlabel(f"test PCK@0.1 (%), {labeled:.0%} labels")
plt.show()

# %% [markdown]
# ## What PL trains on: the teacher's ensembled pseudo-labels
# Crosses are the pseudo-labels kept (≥ 0.5 peak), dots the hidden ground truth the method never sees.

# %%
train_set, _, _, lab_idx, unl_idx = runs.load_data(config.get(cfg.preset, labeled=labeled,
                                                              split_seed=split_seed), progress=False)
teacher, c, _ = models.load_model(f"{pl['teacher']}/best.pt")
idx = unl_idx[:6]
kp, kept = pseudo.pseudo_labels(teacher, train_set, idx, train_set.meta, c["pl_threshold"], stride=c["stride"])
pred = torch.where(kp[..., 2:] > 0, kp[..., :2], torch.full_like(kp[..., :2], float("nan")))
draw.grid(train_set, idx.tolist(), cols=6, pred=pred, title="pseudo-labels (x) vs hidden truth (o)")
plt.show()

# %% [markdown]
# ## PL's key step in a few lines
# `pseudo.pseudo_labels` in plain lines, for the same six images. Each image is seen at every scale of
# `pseudo.SCALES`, as it is and mirrored; the teacher's heatmaps of each view are brought back to the frame of x
# (a mirrored image's left paw is its right paw, so those channels trade places), averaged and decoded. A keypoint is
# kept when its averaged peak reaches the threshold, an image when half of its keypoints are kept. Checked against
# the package.

# %%
x = train_set.batch(idx)["image"]
views = []
for s in pseudo.SCALES:
    for mirror in (False, True):
        A = torch.diag(torch.tensor([-s if mirror else s, s, 1.0])).expand(len(x), 3, 3)    # scale, mirror
        with torch.no_grad():
            h = teacher(geometry.warp(x, A))["heatmaps"]
        if mirror:
            h = h[:, train_set.meta.flip_permutation()]                    # left and right trade places
        views.append(geometry.warp(h, torch.linalg.inv(A)))               # back to the frame of x
xy, peak = heatmaps.decode(torch.stack(views).mean(0), c["stride"])       # the average of the views, decoded
keep_keypoint = peak >= c["pl_threshold"]
keep_image = keep_keypoint.float().mean(1) >= 0.5
print("the package's pseudo-labels:", torch.allclose(xy * keep_keypoint[..., None], kp[..., :2], atol=1e-3),
      "| the package's kept images:", torch.equal(keep_image, kept))

# %% [markdown]
# ## What Gen learns from: reconstructions through the keypoint bottleneck
# Top: x. Middle: x' = g(x), whose appearance the decoder may use. Bottom: the reconstruction of x from x' and the
# keypoints of x.

# %%
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
gen, gc, _ = models.load_model(f"{dirs['Gen']}/best.pt")
b = test.batch(list(range(6)))
x = b["image"]
x2 = geometry.warp(x, warp.random_homography(len(x), gc["g_corner"], gc["g_rotation"],
                                             generator=torch.Generator().manual_seed(0)))
with torch.no_grad():
    o = losses.extra_outputs(gen, {"heatmaps": gen(x)["heatmaps"]}, x, x2, b["attributes"],
                             torch.zeros(len(x), dtype=torch.bool), test.meta, gc["stride"], gc["sigma"])
fig, axes = plt.subplots(3, 6, figsize=(12, 6))
for j in range(6):
    for r, img in enumerate((x[j], x2[j], o["recon"][j])):
        axes[r, j].imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[r, j].axis("off")
    draw.keypoints(axes[0, j], x[j], o["coords"][j], test.meta, size=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Seq-MT: landmarks (L), attributes (A) and landmark ELT
# The seed reports the mean landmark error in percent of the normaliser (lower is better; here the bounding-box
# size that PCK@0.1 uses), so both are shown. The seed's HGR1 errors at 5 % labels are L 57.6, L+A 50.0,
# L+ELT 43.7, L+ELT+A 38.5 — a different dataset; the *order* is what to compare.

# %%
seq = {"L": ("sup",), "L+A": ("sup", "attr"), "L+ELT": ("sup", "elt_lm"), "L+ELT+A": ("sup", "elt_lm", "attr")}
sres = {n: get(losses=l)[0] for n, l in seq.items()}
print(draw.markdown([{"Seq-MT": n, "error (% of normaliser)": round(m["test_error_percent"], 2),
                      "test PCK@0.1": round(m["test_pck"], 2)} for n, m in sres.items()]))
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.bar(list(sres), [m["test_error_percent"] for m in sres.values()])
ax.set_ylabel("landmark error (%)")
plt.show()

# %% [markdown]
# ## Exercise · write ELT
# Write `my_elt(heatmaps_g, unsup, H)`: the mean of (f(x) − g⁻¹(f(g(x))))², the heatmaps of the warped
# image `heatmaps_g` = f(g(x)) brought back with the inverse homography (`torch.linalg.inv(H)`) and compared with
# `unsup` = f(x). Compare your function's hand case with TE's in notebook 04: what does ELT penalise that TE does
# not?
# The checker runs it on a case computed by hand, then on random inputs against
# `losses.equivariant_landmark_transformation`, and prints one line: PASS, or FAIL with the case and what is wrong.
# `course.show("elt")` repeats the task; `print(course.solution("elt"))` shows a solution (all of them:
# kpsemi/course/solutions.py).

# %%
def my_elt(heatmaps_g, unsup, H):
    ...                                       # your code here: return a scalar


course.check("elt", my_elt)

# %%
report.record({**{"test_pck_" + n.split(" ")[0].lower(): m["test_pck"] for n, m in res.items()},
               "pl_pseudo_images": pl["n_pseudo_images"], "pl_pseudo_label_pck": pl["pseudo_label_pck"],
               **{"seqmt_error_" + n.replace("+", "_"): m["test_error_percent"] for n, m in sres.items()},
               **{"seqmt_pck_" + n.replace("+", "_"): m["test_pck"] for n, m in sres.items()}},
              "08_baselines", out_dir, cfg.preset)
