# %% [markdown]
# # 02 · The supervised baseline, and how it degrades with fewer labels
#
# The keypoint localization network (KLN) is an HRNet: it keeps a high-resolution branch through the whole
# network and fuses it repeatedly with lower-resolution branches. The paper reads the heatmaps off the
# highest-resolution branch (stride 4) with a 1×1 convolution; the kit puts a small neck first — a 3×3 convolution
# over the concatenated branches to max(64, K) channels — because a 1×1 head on a C-channel branch can only make C
# different heatmaps (see the head control below and `docs/deviations.md`). The paper uses HRNet-W32 at 256×256
# (the `paper` preset); the CPU presets use a narrow HRNet built by the same timm class, with the same forward path.
#
# Supervised training minimises the mean squared error between predicted heatmaps $h$ and Gaussian targets $t$,
# with unlabeled keypoints masked out:
# $$\mathcal{L}_{sup} = \frac{1}{NKHW}\sum_{n,i,p} w_{n,i}\,(h_{n,i}(p) - t_{n,i}(p))^2 .$$
# Augmentation is the usual one for pose: rotation, scale, translation and horizontal flips — a flip must also
# swap every left keypoint with its right twin.
#
# How much does the baseline lose when only a fraction of the training images keep their labels?

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
fractions = None      # labeled fractions; None: the preset's choice below
split_seed = 0
out_dir = None        # None: results/02_supervised_baseline/

# %%
import matplotlib.pyplot as plt

from kpsemi import config, course, data, draw, runs
from kpsemi.method import evaluate, metrics, models
from kpsemi.repro import report

cfg = config.get(preset)
fractions = fractions or config.by_preset(cfg.preset, smoke=[0.05, 1.0], demo=[0.05, 0.1, 0.2, 0.5, 1.0],
                                          paper=[0.05, 0.1, 0.2, 0.5, 1.0])
out = report.notebook_dir("02_supervised_baseline", out_dir)
m = models.KeypointModel(16, cfg.backbone, False, cfg.embed_dim)
print(f"{cfg.backbone}: {models.count_parameters(m.kln):,} parameters; taps {m.kln.tap_channels} channels; "
      f"input {cfg.input_size} px -> heatmaps {cfg.input_size // cfg.stride} px")

# %% [markdown]
# ## Supervised runs at each labeled fraction
# Each run trains on the labeled subset of `data/splits/` only (the unlabeled images are not used), keeps the
# weights of the best validation PCK and reports test PCK@0.1.

# %%
results, dirs = {}, {}
for f in fractions:
    results[f], dirs[f] = runs.cached(config.get(cfg.preset, losses=("sup",), labeled=f,
                                                 split_seed=split_seed))
    print(f"{f:>5.0%} labeled: test PCK@0.1 {results[f]['test_pck']:.2f}  ({results[f]['steps']} steps, "
          f"{results[f]['seconds']:.0f} s)")
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.plot([100 * f for f in fractions], [results[f]["test_pck"] for f in fractions], "o-")
ax.set_xscale("log")
ax.set_xticks([100 * f for f in fractions], [f"{f:.0%}" for f in fractions])
ax.set_xlabel("labeled training images")
ax.set_ylabel("test PCK@0.1 (%)")
ax.set_title("supervised baseline")
plt.show()

# %% [markdown]
# ## Which keypoints suffer?
# Per-keypoint PCK with the fewest and with all labels, and how often a left keypoint is predicted on its right
# twin (or vice versa): with few labels the network confuses the two sides of the animal — the confusion that
# semantic consistency (notebook 03) targets.

# %%
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
lo, hi = fractions[0], fractions[-1]
swaps = {}
for f in (lo, hi):
    model, c, _ = models.load_model(f"{dirs[f]}/best.pt")
    pred, _ = evaluate.predict(model, test, c["stride"])
    swaps[f] = metrics.swap_rate(pred, test.keypoints, test.meta.flip_pairs)
names = test.meta.keypoints
fig, ax = plt.subplots(figsize=(11, 3.2))
for k, f in enumerate((lo, hi)):
    ax.bar([i + 0.4 * k for i in range(len(names))], [results[f]["test_per_keypoint"][n] for n in names], 0.4,
           label=f"{f:.0%} labeled (left/right swaps {swaps[f]:.1f} %)")
ax.set_xticks([i + 0.2 for i in range(len(names))], names, rotation=70, fontsize=7)
ax.set_ylabel("test PCK@0.1 (%)")
ax.legend()
plt.show()

# %% [markdown]
# ## Found, but which one?
# A miss can be a keypoint the network did not find at all, or one it found *at the wrong keypoint* — the left
# paw on the right paw, a front knee on a back knee. `metrics.any_keypoint_pck` forgets identity: a prediction
# counts when it lies within 0.1 × l of *any* labeled keypoint of the crop. The difference to PCK is the identity
# error; `metrics.wrong_keypoint_hits` splits it into hits at the left/right twin and at another keypoint, and
# `metrics.crowding` says how often a neighbour lies within that radius anyway. `metrics.twin_separation`
# compares how far apart each left/right pair is predicted with how far apart it truly is: 0 means both heatmaps
# of a pair sit on the same spot.

# %%
ident, wrong = {}, {}
for f in (lo, hi):
    model, c, _ = models.load_model(f"{dirs[f]}/best.pt")
    pred, _, hms = evaluate.predict(model, test, c["stride"], return_heatmaps=True)
    sep, sep_true = metrics.twin_separation(pred, test.keypoints, test.norm, test.meta.flip_pairs)
    wrong[f] = metrics.wrong_keypoint_hits(pred, test.keypoints, test.norm, test.meta.flip_pairs)
    ident[f] = {"labeled": f"{f:.0%}", "PCK@0.1": round(results[f]["test_pck"], 2),
                "any-keypoint PCK@0.1": round(metrics.any_keypoint_pck(pred, test.keypoints, test.norm), 2),
                "at the twin": round(wrong[f]["twin"], 2), "at another keypoint": round(wrong[f]["other"], 2),
                "twin separation (predicted)": sep, "twin separation (true)": sep_true}
print(draw.markdown([{**r, "twin separation (predicted)": f"{r['twin separation (predicted)']:.3f}",
                      "twin separation (true)": f"{r['twin separation (true)']:.3f}"} for r in ident.values()]))
crowded = metrics.crowding(test.keypoints, test.norm)
print(f"{crowded:.1f} % of the test keypoints have another keypoint within 0.1 × l; at {hi:.0%} labels the most "
      "frequent wrong-keypoint hits (predicted -> found at, % of keypoints):")
for (k, j), v in list(wrong[hi]["pairs"].items())[:6]:
    print(f"  {names[k]:>17} -> {names[j]:<17} {v:.2f}")
kl, kr = names.index("left_front_paw"), names.index("right_front_paw")
fig, axes = plt.subplots(3, 5, figsize=(11, 6.6))
for j in range(5):
    draw.keypoints(axes[0, j], test[j]["image"], pred[j], test.meta)
    for row, k in ((1, kl), (2, kr)):
        axes[row, j].imshow(hms[j, k], cmap="magma")
        axes[row, j].set_axis_off()
axes[1, 0].set_title("left_front_paw heatmap", fontsize=8, loc="left")
axes[2, 0].set_title("right_front_paw heatmap", fontsize=8, loc="left")
fig.suptitle(f"supervised, {hi:.0%} labeled: predictions (top) and the two front-paw heatmaps")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A control before a claim
# Semi-supervised losses can only pass on what the network can represent. Before any comparison, the upper bound
# has to do the task: supervised with all labels must tell the twins apart (predicted twin separation at least 0.7
# of the true one) and must find keypoints *as the right keypoint*, not just somewhere (any-keypoint PCK within 10
# points of PCK). The same check on HRNet's own head (`head_channels=0`: the 1×1 convolution on the
# highest-resolution branch, 8 channels in `hrnet_tiny` for 16 keypoints) shows why the kit has a neck.

# %%
head_cfg = config.get(cfg.preset, losses=("sup",), labeled=hi, split_seed=split_seed, head_channels=0)
head_res, head_dir = runs.cached(head_cfg)
rows = [{"head": "neck (3×3 conv, 64 ch)", "PCK@0.1": results[hi]["test_pck"],
         "any-keypoint PCK@0.1": results[hi]["test_any_keypoint_pck"],
         "twin separation": results[hi]["test_twin_separation"]},
        {"head": "HRNet's 1×1 head on branch 0", "PCK@0.1": head_res["test_pck"],
         "any-keypoint PCK@0.1": head_res["test_any_keypoint_pck"],
         "twin separation": head_res["test_twin_separation"]}]
true_sep = results[hi]["test_twin_separation_true"]
for r in rows:
    r["separation / true"] = r["twin separation"] / true_sep
    r["control"] = "pass" if (r["separation / true"] >= 0.7
                              and r["any-keypoint PCK@0.1"] - r["PCK@0.1"] <= 10) else "FAIL"
print(draw.markdown([{k: (f"{v:.3f}" if k.startswith(("twin", "sep")) else round(v, 2) if isinstance(v, float)
                          else v) for k, v in r.items()} for r in rows]))
print(f"true twin separation {true_sep:.3f} of the box; supervised at {hi:.0%} labels, {cfg.preset} preset")
if cfg.preset == "smoke":
    print("smoke preset: a few steps only, so these numbers test the plumbing, not the control")

# %% [markdown]
# Read the table: a *pass* means the network can do the task, and a semi-supervised loss has something to pass
# on; a *FAIL* on HRNet's head with twin separation near 0 means its left and right heatmaps are one map. The gap
# between PCK and any-keypoint PCK is the identity error that remains; semantic consistency (notebook 03) asks the
# features under each heatmap to tell keypoint types apart, and the paper credits it with most of its gain
# (Table 2: SC alone lifts LSP at 5 % from 39.2 to 64.7).

# %% [markdown]
# ## Exercise · write the supervised loss
# Write `my_supervised(heatmaps, target, weight, labeled)`: L_sup of this notebook's runs. Take the samples
# with `labeled[b]` True, multiply each keypoint's squared error (heatmaps − target)² by its weight (1 where the
# keypoint is labeled, 0 where not) and average over those samples' keypoints and pixels.
# The checker runs it on a case computed by hand, then on random inputs against `losses.supervised`, and prints one
# line: PASS, or FAIL with the case and what is wrong. `course.show("supervised")` repeats the task;
# `print(course.solution("supervised"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_supervised(heatmaps, target, weight, labeled):
    ...                                       # your code here: return a scalar


course.check("supervised", my_supervised)

# %%
report.record({**{f"test_pck_{int(round(100 * f))}": results[f]["test_pck"] for f in fractions},
               "swap_rate_low": swaps[lo], "swap_rate_high": swaps[hi],
               "drop_low_vs_high": results[hi]["test_pck"] - results[lo]["test_pck"],
               "any_keypoint_pck_low": ident[lo]["any-keypoint PCK@0.1"],
               "any_keypoint_pck_high": ident[hi]["any-keypoint PCK@0.1"],
               "wrong_at_twin_high": wrong[hi]["twin"], "wrong_at_other_high": wrong[hi]["other"],
               "wrong_near_own_high": wrong[hi]["near_own"], "crowding": crowded,
               "twin_separation_high": ident[hi]["twin separation (predicted)"],
               "twin_separation_true": ident[hi]["twin separation (true)"],
               "control_separation_ratio": rows[0]["separation / true"],
               "control_any_minus_pck": rows[0]["any-keypoint PCK@0.1"] - rows[0]["PCK@0.1"],
               "control_passes": rows[0]["control"] == "pass",
               "hrnet_head_separation_ratio": rows[1]["separation / true"]},
              "02_supervised_baseline", out_dir, cfg.preset)
