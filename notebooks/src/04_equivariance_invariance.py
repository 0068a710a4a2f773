# %% [markdown]
# # 04 · Transformation equivariance (TE) vs invariance (TI), and TE vs ELT
#
# Heatmaps and representations should react to a transformation of the image in opposite ways.
#
# **TE — heatmaps are equivariant.** Warping the image and then localising must equal localising and then
# warping the heatmaps, for a random perspective warp g(·, s):
# $$\mathcal{L}_{te} = \mathbb{E}_x\,\| f(g(x, s)) - g(f(x), s) \|^2 .$$
# **TI — representations are invariant.** The concatenated keypoint representations $z = [z_1, …, z_K]$ of x
# and of x' = g(x, s) should be the same:
# $$\mathcal{L}_{ti} = \mathbb{E}_{x,x'}\,\| z - z' \|^2 .$$
# **ELT** (Honari et al. 2018), the older idea the paper compares with, brings the heatmaps of the warped image
# back with the *inverse* warp, $\| f(x) - g^{-1}(f(g(x))) \|^2$. Whatever g pushed out of the image cannot come
# back, so ELT penalises a perfectly equivariant network near the borders; TE applies the same g to both sides
# and has no such blind spot. For labeled images the unsupervised losses use the ground-truth heatmaps instead of
# the predictions (paper §4.2), which anchors them early in training.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05
split_seed = 0
out_dir = None        # None: results/04_equivariance_invariance/

# %%
import matplotlib.pyplot as plt
import torch

from kpsemi import config, course, data, draw, runs
from kpsemi.data import geometry
from kpsemi.method import heatmaps, losses, models, warp
from kpsemi.repro import report

cfg = config.get(preset)
out = report.notebook_dir("04_equivariance_invariance", out_dir)

# %% [markdown]
# ## TE vs ELT on a picture
# A perfectly equivariant "network" (its heatmaps of x are the true Gaussians, its heatmaps of g(x) are exactly
# g applied to them), and a warp g that shifts the image so that some keypoints leave it. TE is exactly zero; ELT is not, because the inverse warp returns empty heatmaps
# for the keypoints that left the image.

# %%
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
b = test.batch([0])
S, hs = cfg.input_size, cfg.input_size // cfg.stride
f_x = heatmaps.render(b["keypoints"], (hs, hs), cfg.stride, cfg.sigma)            # f(x): the true heatmaps
g = torch.tensor([[[0.8, 0.0, 0.55], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]]])          # scale + shift right/down
x_g = geometry.warp(b["image"], g)
f_gx = geometry.warp(f_x, g)           # f(g(x)) of a perfectly equivariant network: g applied to its heatmaps
out_te = {"unsup": f_x, "heatmaps_g": f_gx, "H": g}
te, elt = losses.transformation_equivariance(out_te), losses.equivariant_landmark_transformation(out_te)
back = geometry.warp(f_gx, torch.linalg.inv(g))
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
draw.heatmap_overlay(axes[0], b["image"][0], f_x[0], title="f(x)")
draw.heatmap_overlay(axes[1], x_g[0], f_gx[0], title="f(g(x)) = g(f(x)): TE = %.2g" % te)
draw.heatmap_overlay(axes[2], b["image"][0], back[0], title="g⁻¹(f(g(x))): ELT = %.2g" % elt)
draw.heatmap_overlay(axes[3], b["image"][0], (f_x - back)[0].abs(), title="what ELT penalises")
plt.show()

# %% [markdown]
# ## The losses in training (same labels, same schedule)
# Supervised; + TE; + TI; + TE + TI; and the ELT baseline in place of TE.

# %%
setups = {"supervised": ("sup",), "sup + TE": ("sup", "te"), "sup + TI": ("sup", "ti"),
          "sup + TE + TI": ("sup", "te", "ti"), "sup + ELT": ("sup", "elt")}
setups = config.by_preset(cfg.preset, smoke=setups, demo=setups, paper=setups)
res, dirs = {}, {}
for n, loss_names in setups.items():
    res[n], dirs[n] = runs.cached(config.get(cfg.preset, losses=loss_names, labeled=labeled, split_seed=split_seed))
print(draw.markdown([{"run": n, "test PCK@0.1": round(m["test_pck"], 2), "val PCK@0.1": round(m["val_pck"], 2),
                      "steps": m["steps"]} for n, m in res.items()]))
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(res), [m["test_pck"] for m in res.values()])
ax.invert_yaxis()
ax.set_xlabel("test PCK@0.1 (%)")
plt.show()

# %% [markdown]
# ## TE and TI in a few lines, on a trained network
# The network trained with both losses, the test crop x from above and a random warp g of the kind training draws.
# TE compares the heatmaps of g(x) with g applied to the heatmaps of x; TI compares the representations z_i of x and
# of g(x), each scaled to unit length (so TI cannot shrink z, and equals 2 − 2 cos(z_i, z'_i)). In training, labeled
# keypoints use their ground-truth heatmaps on the x side (§4.2); here the crop is treated as unlabeled. Both are
# checked against the package's losses.

# %%
model, c, _ = models.load_model(f"{dirs['sup + TE + TI']}/best.pt")
x = b["image"]
H = warp.random_homography(1, c["g_corner"], c["g_rotation"], generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    o, o_g = model(x), model(geometry.warp(x, H))                          # f(x) and f(g(x))
l_te = ((o_g["heatmaps"] - geometry.warp(o["heatmaps"], H)) ** 2).mean()    # f(g(x)) against g(f(x))
z = models.keypoint_embeddings(o["features"], o["heatmaps"])                # (1, K, C)
z_g = models.keypoint_embeddings(o_g["features"], o_g["heatmaps"])
unit, unit_g = torch.nn.functional.normalize(z, dim=-1), torch.nn.functional.normalize(z_g, dim=-1)
l_ti = ((unit - unit_g) ** 2).sum(-1).mean()                                # squared distance, mean over keypoints
step = {"heatmaps_g": o_g["heatmaps"], "unsup": o["heatmaps"], "H": H, "z": z, "z_g": z_g}
print(f"L_te = {float(l_te):.3g}; as the package computes it:",
      torch.allclose(l_te, losses.transformation_equivariance(step)))
print(f"L_ti = {float(l_ti):.3g}; as the package computes it:",
      torch.allclose(l_ti, losses.transformation_invariance(step)))

# %% [markdown]
# ## Exercise · write TE
# Write `my_te(heatmaps_g, unsup, H)`: the mean of (f(g(x)) − g(f(x)))² with `heatmaps_g` = f(g(x)),
# `unsup` = f(x) (B, K, h, w) and g given as normalised homographies `H` (B, 3, 3): g(f(x)) is
# `geometry.warp(unsup, H)`.
# The checker runs it on a case computed by hand, then on random inputs against
# `losses.transformation_equivariance`, and prints one line: PASS, or FAIL with the case and what is wrong.
# `course.show("te")` repeats the task; `print(course.solution("te"))` shows a solution (all of them:
# kpsemi/course/solutions.py).

# %%
def my_te(heatmaps_g, unsup, H):
    ...                                       # your code here: return a scalar


course.check("te", my_te)

# %% [markdown]
# ## Exercise · write TI
# Write `my_ti(z, z_g)`: for the representations z, z_g (B, K, C) of x and g(x), scale each z_i to unit
# length, sum the squared differences over the C channels and average over samples and keypoints.
# The checker runs it on a case computed by hand, then on random inputs against `losses.transformation_invariance`,
# and prints one line: PASS, or FAIL with the case and what is wrong. `course.show("ti")` repeats the task;
# `print(course.solution("ti"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_ti(z, z_g):
    ...                                       # your code here: return a scalar


course.check("ti", my_ti)

# %%
report.record({"te_of_equivariant_map": float(te), "elt_of_equivariant_map": float(elt),
               **{"test_pck_" + n.replace("sup + ", "").replace(" + ", "_").lower(): m["test_pck"]
                  for n, m in res.items()}}, "04_equivariance_invariance", out_dir, cfg.preset)
