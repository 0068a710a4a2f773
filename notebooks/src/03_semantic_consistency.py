# %% [markdown]
# # 03 · Semantic keypoint representations and the SC loss
#
# Heatmaps say *where* a keypoint is, not *what* it is. The paper adds a representation per keypoint:
# intermediate HRNet features (the output of every multi-scale stage at heatmap resolution; 352 channels for
# W32) are concatenated and mapped by a 1×1 convolution to C = 64 channels, F ∈ ℝ^{C×H×W}. Masking F with keypoint
# i's heatmap and taking a global max gives its **semantic keypoint representation**
# $$z_i = \mathrm{GMP}(F \odot h_i) \in \mathbb{R}^{C}.$$
# A tiny keypoint classification network φ (KCN: 64 → hidden → K, shared by all keypoints, < 1,000 parameters)
# must recognise which keypoint each $z_i$ came from. Since the heatmap order is fixed, the labels are free —
# also on unlabeled images:
# $$\mathcal{L}_{sc}(x) = -\frac{1}{K}\sum_{i=1}^{K} \log \varphi(z_i)_i .$$
# The gradient flows into F and, through $h_i$, into the heatmaps: to be recognisable, the heatmap of the left
# front paw must sit on features that look like a left front paw in every image.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05
split_seed = 0
out_dir = None        # None: results/03_semantic_consistency/

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from kpsemi import config, course, data, draw, runs
from kpsemi.method import evaluate, losses, metrics, models
from kpsemi.repro import report

cfg = config.get(preset)
out = report.notebook_dir("03_semantic_consistency", out_dir)
kcn = models.KCN(16, cfg.embed_dim)
print("KCN:", kcn, f"\n{models.count_parameters(kcn)} parameters")

# %% [markdown]
# ## Supervised vs supervised + SC, same labels, same schedule

# %%
setups = {"supervised": ("sup",), "sup + SC": ("sup", "sc")}
res, dirs = {}, {}
for name, loss_names in setups.items():
    res[name], dirs[name] = runs.cached(config.get(cfg.preset, losses=loss_names, labeled=labeled,
                                                   split_seed=split_seed))
    print(f"{name:12s} test PCK@0.1 {res[name]['test_pck']:.2f}")

# %% [markdown]
# ## What z_i looks like
# For one test crop: the predicted heatmap of a keypoint, one channel of F, and their product whose maximum is
# that channel's entry of $z_i$.

# %%
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
model, c, _ = models.load_model(f"{dirs['sup + SC']}/best.pt")
with torch.no_grad():
    o = model(test.batch([0])["image"])
k = test.meta.keypoints.index("left_front_paw")
F, h = o["features"][0], o["heatmaps"][0, k]
ch = int((F * h).flatten(1).amax(1).argmax())
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
draw.keypoints(axes[0], test[0]["image"], test[0]["keypoints"], test.meta, title="test crop")
draw.heatmap_overlay(axes[1], test[0]["image"], h.clamp_min(0), title=f"h: {test.meta.keypoints[k]}")
axes[2].imshow(F[ch], cmap="viridis")
axes[2].set_title(f"F, channel {ch}")
axes[3].imshow((F[ch] * h), cmap="viridis")
axes[3].set_title("F ⊙ h (its max is z_i[ch])")
for ax in axes[2:]:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## z_i and L_sc in a few lines
# The package computes z_i with a memory-saving autograd function (`models.keypoint_embeddings`) that never holds
# F ⊙ h_i of every keypoint at once. Here is the same computation in plain lines, on this crop's outputs. Each
# heatmap first becomes a mask m_i: clipped at 0 and divided by its peak, so that ground-truth Gaussians and
# predictions of any height weigh F alike. F times every mask, maximum over the pixels: z_i. The KCN classifies
# every z_i, and L_sc is the cross-entropy against the keypoint's own index. Both are checked against the package.

# %%
feats, hms = o["features"], o["heatmaps"]                                  # (1, C, h, w), (1, K, h, w)
masks = hms.clamp_min(0)
masks = masks / masks.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)     # m_i: peak 1, nothing negative
z = (feats[:, None] * masks[:, :, None]).amax(dim=(-2, -1))                # (1, K, C): z_i = GMP(F ⊙ m_i)
with torch.no_grad():
    logits = model.kcn(z)                                                  # (1, K, K): the KCN on every z_i
K = hms.shape[1]
l_sc = torch.nn.functional.cross_entropy(logits.reshape(K, K), torch.arange(K))    # keypoint i is labelled i
print("z_i as the package computes it:", torch.allclose(z, models.keypoint_embeddings(feats, hms), atol=1e-6))
print(f"L_sc = {float(l_sc):.3f} nats (ln K = {np.log(K):.3f} for a KCN that guesses); as the package computes it:",
      torch.allclose(l_sc, losses.semantic_consistency({"logits": logits})))

# %% [markdown]
# ## Does the KCN recognise the keypoints of *test* images?
# z_i from the model's own predicted heatmaps on test crops, classified by its KCN (labeled keypoints only).
# The confusion matrix shows where identity is ambiguous — typically between left and right twins.

# %%
def kcn_predictions(model, data, batch=128):
    preds = []
    with torch.no_grad():
        for i in range(0, len(data), batch):
            o = model(data.batch(torch.arange(i, min(i + batch, len(data))))["image"])
            preds.append(model.kcn(models.keypoint_embeddings(o["features"], o["heatmaps"])).argmax(-1))
    return torch.cat(preds)                                   # (N, K) predicted keypoint type


p = kcn_predictions(model, test)
K = test.meta.num_keypoints
lab = test.keypoints[..., 2] > 0
truth = torch.arange(K).expand_as(p)
kcn_accuracy = 100 * float((p == truth)[lab].float().mean())
conf = np.zeros((K, K))
np.add.at(conf, (truth[lab].numpy(), p[lab].numpy()), 1)
conf /= conf.sum(1, keepdims=True)
fig, ax = plt.subplots(figsize=(6, 5))
ax.imshow(conf, cmap="Blues")
ax.set_xticks(range(K), test.meta.keypoints, rotation=80, fontsize=6)
ax.set_yticks(range(K), test.meta.keypoints, fontsize=6)
ax.set_xlabel("KCN says")
ax.set_title(f"KCN accuracy on test keypoints: {kcn_accuracy:.1f} %")
plt.show()

# %% [markdown]
# ## Left/right swaps of the localisation itself

# %%
swaps, twins = {}, {}
for name in setups:
    mdl, cc, _ = models.load_model(f"{dirs[name]}/best.pt")
    pred, _ = evaluate.predict(mdl, test, cc["stride"])
    swaps[name] = metrics.swap_rate(pred, test.keypoints, test.meta.flip_pairs)
    twins[name] = metrics.twin_separation(pred, test.keypoints, test.norm, test.meta.flip_pairs)
print(draw.markdown([{"run": n, "test PCK@0.1": round(res[n]["test_pck"], 2),
                      "left/right swaps %": round(swaps[n], 2),
                      "twin separation predicted / true": f"{twins[n][0]:.3f} / {twins[n][1]:.3f}"} for n in setups]))

# %% [markdown]
# **What to look for.** With every training image labeled, SC only ever sees ground-truth heatmaps and is a plain
# supervised side task: its loss starts at ln K (ln 16 = 2.77 nats, chance) and falls as the features under each
# heatmap become keypoint-specific; the KCN's confusions above show which keypoints still share features — the
# left/right twins first. SC can only pass on to unlabeled images the identity the features carry; notebook 02's
# control measures it (twin separation, identity-free PCK).

# %% [markdown]
# ## Exercise · write z_i
# Write `my_embedding(features, heatmaps)`: z_i = GMP(F ⊙ m_i) for features F (B, C, h, w) and heatmaps
# (B, K, h, w), as in the cell above: each heatmap clipped at 0 and divided by its peak is the mask m_i, and z_i is
# the maximum over the pixels of F times that mask, one value per channel: (B, K, C).
# The checker runs it on a case computed by hand, then on random inputs against `models.keypoint_embeddings`, and
# prints one line: PASS, or FAIL with the case and what is wrong. `course.show("embedding")` repeats the task;
# `print(course.solution("embedding"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_embedding(features, heatmaps):
    ...                                       # your code here: return a (B, K, C) tensor


course.check("embedding", my_embedding)

# %% [markdown]
# ## Exercise · write the SC loss
# Write `my_sc(logits)`: the KCN's logits (B, K, K) for every z_i; the label of keypoint i is i. Return the
# cross-entropy averaged over samples and keypoints.
# The checker runs it on a case computed by hand, then on random inputs against `losses.semantic_consistency`, and
# prints one line: PASS, or FAIL with the case and what is wrong. `course.show("sc")` repeats the task;
# `print(course.solution("sc"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_sc(logits):
    ...                                       # your code here: return a scalar


course.check("sc", my_sc)

# %%
report.record({"test_pck_sup": res["supervised"]["test_pck"], "test_pck_sup_sc": res["sup + SC"]["test_pck"],
               "kcn_accuracy": kcn_accuracy, "swap_rate_sup": swaps["supervised"],
               "swap_rate_sup_sc": swaps["sup + SC"]}, "03_semantic_consistency", out_dir, cfg.preset)
