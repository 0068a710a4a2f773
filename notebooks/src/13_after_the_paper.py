# %% [markdown]
# # 13 · After the paper: mean teacher and dual networks on the same pipeline
#
# Researchers reproduce a paper to compare it with what came after. This notebook puts two later semi-supervised
# keypoint methods beside the 2021 method and its Table 1 baselines, on the same network (KLN), augmentation,
# label subsets, validation and early stopping:
#
# - **mean_teacher** — an exponential moving average (EMA) of the network, the *teacher*, predicts heatmaps on the
#   weakly augmented view of an unlabeled crop; those heatmaps, moved into the frame of a *strongly* augmented view
#   of the same crop, supervise the *student* there (Tarvainen & Valpola 2017, as keypoint detectors after the
#   paper use it).
# - **dual** — Xie et al., ICCV 2021, "An empirical study of the collapsing problem in semi-supervised 2D human pose
#   estimation": an easy/hard pair of views, the prediction on the easy view teaching the hard one, and two
#   networks teaching each other, with Joint Cutout (squares cut around predicted joints) in the hard view.
# - **consistency** — the setting Xie et al. warn about: two equally hard views of a crop, each taught by the other.
#   It collapses to all-background heatmaps on unlabeled images; it is a lesson here, not a Table 1 row.
#
# The runs are the ones of `python -m kpsemi reproduce --table 1` (the `mean_teacher` and `dual` rows) and of
# `python -m kpsemi train --method mean_teacher | dual | consistency`; the code is `kpsemi/baselines/views.py`,
# `mean_teacher.py`, `dual.py`, `consistency.py` and the losses `mt`, `dual`, `cons` in
# `kpsemi/baselines/losses.py`.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05        # the labeled fraction of Table 1 here
split_seeds = None    # None: [0] at smoke, [0, 1, 2] at demo and paper
out_dir = None        # None: results/13_after_the_paper/

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

import kpsemi
from kpsemi import config, draw, runs
from kpsemi.baselines import views
from kpsemi.data.sources import dlc
from kpsemi.method import heatmaps, metrics, models
from kpsemi.method.train import augment
from kpsemi.repro import report

cfg = config.get(preset)
out = report.notebook_dir("13_after_the_paper", out_dir)
seeds = list(split_seeds or config.by_preset(cfg.preset, smoke=[0], demo=[0, 1, 2], paper=[0, 1, 2]))
print(f"preset {cfg.preset}: {cfg.backbone} at {cfg.input_size} px, up to {cfg.max_steps} steps; {labeled:.0%} "
      f"labels, split seeds {seeds}; results in {out}")

# %% [markdown]
# ## Two views of one unlabeled crop
#
# Every view starts from the **weak view** x: the standard augmentation of every run (rotation, scale, flip). A
# **strong view** is x_s = J(T_H(x)): a further random perspective warp H, larger than TE's g (rotation, scale and
# corner shifts from the config's `strong_*` fields, printed below), then photometric jitter J (brightness,
# contrast, saturation). H is known, so the heatmaps predicted on x move into the frame of
# x_s by the same warp, T_H(h). Pixels of x_s that come from outside x have no target (a mask m, a ones image warped
# by H).
#
# **mean_teacher.** Student θ, teacher θ̄ (the EMA):
#
# $$L = w_\text{sup} L_\text{sup}(\theta) + w_\text{mt}\,\frac{1}{K\sum_p m_p}\sum_{p,k} m_p\,
#   \big(f_\theta(x_s)_{k,p} - T_H(f_{\bar\theta}(x))_{k,p}\big)^2, \qquad
#   \bar\theta \leftarrow \alpha\,\bar\theta + (1-\alpha)\,\theta \text{ after every step}$$
#
# with α = `ema_decay` (printed below; the paper preset sets a slower teacher than the CPU presets) over every
# parameter and BatchNorm statistic. The teacher predicts in eval mode without gradient; it is the model that is
# validated, early-stopped and tested. That is the plain mean teacher (`mt_target="heatmap"`, the paper preset).
# The CPU presets use `mt_target="peak"`: the target of keypoint k is a peak-1 Gaussian G_k at the keypoint
# decoded from the teacher's heatmap, moved by H, and keypoint k's squared error is weighted by the height
# c_k = clip(max_p f_θ̄(x)_{k,p}, 0, 1) of that teacher peak:
#
# $$L_\text{mt} = \frac{1}{\sum_{p,k} m_p c_k}\sum_{p,k} m_p\,c_k\,\big(f_\theta(x_s)_{k,p} - T_H(G_k)_p\big)^2$$
#
# The teacher's own heatmaps peak far below the labels' 1 on the CPU network, so the plain target also teaches the
# student low peaks; the measured effect is in [docs/deviations.md](../docs/deviations.md) (row 11). At the demo
# preset the mean teacher also takes two unlabeled crops per labeled crop (32 + 64 a step) and up to 6,000 steps after
# its warm start (`config.METHOD_PRESETS`, printed below; row 12).
#
# **dual.** Networks A and B. The hard view of each is x_s with **Joint Cutout**: squares (side `cutout_size` × the
# crop side), filled with the mean colour, centred on `cutout_joints` of the keypoints the *other* network predicts
# on x, moved by H:
#
# $$L_A = w_\text{sup} L_\text{sup}(A) + w_\text{dual}\,\big\|A(x_h^{B}) - T_H(B(x))\big\|^2_m, \qquad
#   L_B = w_\text{sup} L_\text{sup}(B) + w_\text{dual}\,\big\|B(x_h^{A}) - T_H(A(x))\big\|^2_m$$
#
# and the step minimises L_A + L_B (targets without gradient). A starts from the supervised twin, B from a
# supervised run with the same labels and another seed (`init="supervised"`); A is the reported network.
#
# **consistency.** Two strong views x_1 = J(T_{H_1}(x)), x_2 = J(T_{H_2}(x)), both with gradient, view 2's
# heatmaps moved into view 1's frame by H_1 H_2^{-1}: $\|f(x_1) - T_{H_1 H_2^{-1}}(f(x_2))\|^2_m$.
#
# Below: four unlabeled training crops. The teacher here is the supervised model at this labeled fraction (where
# both methods start with `init="supervised"`, the demo preset's setting).

# %%
base = config.get(cfg.preset, labeled=labeled, split_seed=seeds[0])
sup_m, sup_dir = runs.cached(config.supervised_twin(base))
teacher, tc, _ = models.load_model(f"{sup_dir}/best.pt")
train_set, _, _, lab_idx, unl_idx = runs.load_data(base, progress=False)
g = torch.Generator().manual_seed(0)
dual_cfg = config.canonical(config.get(cfg.preset, method="dual"))                  # its strong_* and cutout_*
mt_cfg = config.canonical(config.get(cfg.preset, method="mean_teacher"))
print(f"strong view: rotation ±{dual_cfg.strong_rotation:g}°, scale {dual_cfg.strong_scale[0]:g}–"
      f"{dual_cfg.strong_scale[1]:g}, corners moved by up to {dual_cfg.strong_corner:g} of the side, jitter "
      f"±{dual_cfg.strong_jitter:g}; mean_teacher: ema_decay {mt_cfg.ema_decay:g}, mt_target {mt_cfg.mt_target!r}, "
      f"{mt_cfg.unlabeled_ratio:g} unlabeled crops per labeled crop, up to {mt_cfg.semi_max_steps or mt_cfg.max_steps} "
      f"steps; Joint Cutout: {dual_cfg.cutout_joints} squares of side {dual_cfg.cutout_size:g} × {cfg.input_size} "
      f"px; init {base.init!r}")
x, _, _ = augment(train_set.batch(unl_idx[:4]), base, train_set.meta, g)           # weak views (4, 3, S, S)
x_s, H = views.strong_view(x, dual_cfg, g)                                          # strong views, warps H
with torch.no_grad():
    h_weak = teacher(x)["heatmaps"].float()                                           # (4, K, h, w)
target, valid = views.to_frame(h_weak, H)
centres = views.cutout_centres(h_weak, H, dual_cfg.cutout_joints, cfg.stride, g)   # (4, 3, 2), hard frame
x_h = views.joint_cutout(x_s, centres, dual_cfg.cutout_size * x.shape[-1])
weak_kp, _ = heatmaps.decode(h_weak, cfg.stride)
cut_kp = torch.cat([centres, 2.0 * (centres[..., :1] > -1e5)], -1)                  # v = 0: outside the crop
fig, axes = plt.subplots(4, 5, figsize=(12, 10))
for i in range(4):
    draw.keypoints(axes[i, 0], x[i], weak_kp[i], train_set.meta, size=10, title="weak view x + teacher keypoints")
    draw.heatmap_overlay(axes[i, 1], x[i], h_weak[i], title="teacher heatmaps on x (max over K)")
    draw.heatmap_overlay(axes[i, 2], x_s[i], target[i] * valid[i], title="target T_H(teacher(x)) on x_s")
    axes[i, 3].imshow(valid[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[i, 3].set_title("mask m (black: no target)", fontsize=8)
    axes[i, 3].set_axis_off()
    draw.keypoints(axes[i, 4], x_h[i], cut_kp[i], size=30, marker="s", title="dual's hard view: Joint Cutout")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Table 1 on the embedded set, every row
#
# The paper's rows (supervised, PL, ELT, Gen, ours = SC+TE+TI) and the two after it, at the same labeled fraction
# and split seeds, plus the supervised model with every label. *Gap closed* is the share of the supervised
# labeled-fraction → 100 % gap a row closes: (row − supervised) / (supervised 100 % − supervised), per split seed.
# Every run is `runs.cached`, so the runs of notebook 08, `reproduce --table 1` and this notebook are the same.

# %%
ROWS = {"supervised": dict(losses=("sup",)), "PL": dict(losses=("sup",), method="pl"),
        "ELT": dict(losses=("sup", "elt")), "Gen": dict(losses=("sup", "gen")),
        "ours (SC+TE+TI)": dict(losses=("sup", "sc", "te", "ti")),
        "mean_teacher": dict(method="mean_teacher"), "dual": dict(method="dual")}
SEMI = [r for r in ROWS if r != "supervised"]
res, dirs, full = {}, {}, {}
for s in seeds:
    for name, kw in ROWS.items():
        res[name, s], dirs[name, s] = runs.cached(config.get(cfg.preset, labeled=labeled, split_seed=s, **kw),
                                                  progress=True)
    full[s], _ = runs.cached(config.get(cfg.preset, losses=("sup",), labeled=1.0, split_seed=s), progress=True)


def gap(name, s):
    return metrics.gap_closed(res["supervised", s]["test_pck"], res[name, s]["test_pck"], full[s]["test_pck"])


report_gaps = config.plumbing_note(cfg.preset) is None     # smoke numbers only test the plumbing: no gap closed


table = []
for name in ROWS:
    pck = [res[name, s]["test_pck"] for s in seeds]
    row = {"method": name, **{f"seed {s}": round(p, 2) for s, p in zip(seeds, pck)},
           "mean": round(float(np.mean(pck)), 2), "std": round(float(np.std(pck, ddof=1)), 2) if len(pck) > 1 else ""}
    if name != "supervised" and report_gaps:
        row[f"gap closed % (seed {seeds[0]})"] = round(gap(name, seeds[0]), 1)
        row["gap closed % (mean)"] = round(float(np.mean([gap(name, s) for s in seeds])), 1)
    table.append(row)
table.append({"method": "supervised, 100 % labeled", **{f"seed {s}": round(full[s]["test_pck"], 2) for s in seeds},
              "mean": round(float(np.mean([full[s]["test_pck"] for s in seeds])), 2)})
print(draw.markdown(table, columns=list(table[1])))                 # the columns of a semi-supervised row
fig, ax = plt.subplots(figsize=(7, 3.4))
means = [np.mean([res[n, s]["test_pck"] for s in seeds]) for n in ROWS]
ax.barh(list(ROWS), means, color=["#999"] + ["#1f77b4"] * (len(ROWS) - 3) + ["#d62728"] * 2)
ax.axvline(np.mean([full[s]["test_pck"] for s in seeds]), color="k", ls="--", label="supervised, 100 % labeled")
ax.invert_yaxis()
ax.set_xlabel(f"test PCK@0.1 (%), {labeled:.0%} labeled, mean over split seeds {seeds}")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The collapse: consistency between two equally hard views
#
# Xie et al. explain the failure: a keypoint covers a few pixels of its heatmap and background all the others, so
# where two views disagree the cheapest agreement is to predict background, and all-background agrees with
# everything. The labeled crops hold the heatmaps up where labels exist; nothing does on the unlabeled views. The
# history of every run of the three methods records the **heatmap energy** — the mean over crops and keypoints of a
# heatmap's maximum (a perfect Gaussian peak is 1) — on the unlabeled views the network learns from and on the
# labeled crops, averaged over the steps between two evaluations.
#
# The `consistency` run below uses the setting in `collapse`: from scratch (so nothing but the consistency loss
# holds the unlabeled heatmaps up or down beyond what the labeled crops teach), a consistency weight
# `weights["cons"]` above the supervised one, and at the demo preset at most 1,500 steps (a short extra run: look
# for the unlabeled energy falling while the labeled crops' energy climbs); the `mean_teacher` and `dual` curves
# are the Table 1 runs of the first split seed, which teach from an easy (weak) view to a hard (strong) one. The
# first and last values are printed under the plot and in the closing note. At the smoke preset the runs last a
# few dozen steps: the curves there only show that the energies are measured and recorded; the comparison needs
# the demo or paper preset.

# %%
collapse = dict(method="consistency", init="scratch", weights={**cfg.weights, "cons": 1e4},
                max_steps=config.by_preset(cfg.preset, smoke=None, demo=1500, paper=None))   # None: the preset's
cons_m, cons_dir = runs.cached(config.get(cfg.preset, labeled=labeled, split_seed=seeds[0], **collapse),
                               progress=True)


def history(d):
    return [json.loads(line) for line in open(f"{d}/history.jsonl")]


curves = {"consistency (two hard views)": history(cons_dir), "mean_teacher (weak -> strong)":
          history(dirs["mean_teacher", seeds[0]]), "dual (easy -> hard)": history(dirs["dual", seeds[0]])}
fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.6))
for (name, h), colour in zip(curves.items(), ("#d62728", "#1f77b4", "#2ca02c")):
    steps = [r["step"] for r in h]
    a.plot(steps, [r["energy_unlabeled"] for r in h], "o-", color=colour, label=name)
    b.plot(steps, [r["energy_labeled"] for r in h], "o-", color=colour, label=name)
    c.plot(steps, [r["val_pck"] for r in h], "o-", color=colour, label=name)
a.set_title("heatmap energy, unlabeled views")
b.set_title("heatmap energy, labeled crops")
c.set_title("validation PCK@0.1 (%)")
for ax in (a, b, c):
    ax.set_xlabel("step")
a.set_ylabel("mean heatmap maximum")
a.legend(fontsize=7)
plt.tight_layout()
plt.show()
# (unlabeled energy at the first and at the last evaluation, labeled energy at the last)
energy = {name: (h[0]["energy_unlabeled"], h[-1]["energy_unlabeled"], h[-1]["energy_labeled"])
          for name, h in curves.items()}
for name, (first, last, lab) in energy.items():
    print(f"{name}: unlabeled heatmap energy {first:.3f} at the first evaluation, {last:.3f} at the last "
          f"({last / lab:.2f} × the labeled crops' {lab:.3f})")

# %% [markdown]
# What `consistency` predicts on the four unlabeled crops above at its last step (bottom), beside the supervised
# model at the same labeled fraction (top); heatmaps over the crop on one colour scale, 0 to 1 (a perfect peak).

# %%
cons_model, _, _ = models.load_model(f"{cons_dir}/best.pt")
last = torch.load(f"{cons_dir}/last.pt", map_location="cpu", weights_only=True)
cons_model.load_state_dict(last["model"])         # the weights at the last step, not the best ones
cons_model.eval()
with torch.no_grad():
    h_cons = cons_model(x)["heatmaps"].float()
fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for i in range(4):
    draw.heatmap_overlay(axes[0, i], x[i], h_weak[i], vmax=1.0, title=f"supervised: max {h_weak[i].max():.2f}")
    draw.heatmap_overlay(axes[1, i], x[i], h_cons[i], vmax=1.0, title=f"consistency, last step: max "
                                                                      f"{h_cons[i].max():.2f}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A second real case: the mirror-mouse DeepLabCut project
#
# When `../shared/datasets/mirror-mouse` (beside the repository) is present — a DeepLabCut project of one mouse
# seen from the top and in a mirror, labeled frames and a video — the supervised model on its labeled training
# frames meets the best semi-supervised row of the table above, which learns from frames sampled from the
# project's video as unlabeled images (PL is left out: it pseudo-labels the split's unlabeled images, and every
# labeled frame is used here). The split of the labeled frames is the project's seeded train/val/test split; the
# frame and keypoint counts are printed below. The test set is small: compare pixel errors as well as PCK. Without
# the folder (a fresh clone has no `../shared`) the section is skipped.

# %%
example = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(kpsemi.__file__)), "..", "..", "shared",
                                        "datasets", "mirror-mouse"))
mouse = {}
if os.path.isdir(example):
    best = max((r for r in SEMI if r != "PL"), key=lambda r: np.mean([res[r, s]["test_pck"] for s in seeds]))
    mouse_meta, mouse_frames = dlc.load_project(example)
    print(f"mirror-mouse: {len(mouse_frames)} labeled frames, {mouse_meta.num_keypoints} keypoints; train / val / test "
          f"{' / '.join(str(len(dlc.load_split(example, p, seed=base.data_seed)[1])) for p in ('train', 'val', 'test'))}"
          f" frames; the semi-supervised row: {best}")
    spec = runs.DataSpec(dlc_project=example, video_frames=config.by_preset(cfg.preset, smoke=16, demo=500,
                                                                            paper=500))
    steps = config.by_preset(cfg.preset, smoke=20, demo=None, paper=None)
    for name in ("supervised", best):
        mouse[name], _ = runs.cached(config.get(cfg.preset, labeled=1.0, max_steps=steps, **ROWS[name]), spec,
                                     progress=True)
    print(draw.markdown([{"mirror-mouse": n, "test PCK@0.1": round(m["test_pck"], 2),
                          "test error px": round(m["test_pixel_error"], 2), "val PCK@0.1": round(m["val_pck"], 2),
                          "labeled": m["n_labeled"], "unlabeled frames": m["n_unlabeled"], "steps": m["steps"]}
                         for n, m in mouse.items()]))
else:
    print(f"mirror-mouse section skipped: {example} is not present")

# %% [markdown]
# ## Closing note
#
# The note below is written from this run's numbers (preset, labeled fraction and split seeds as printed at the
# top); `python -m kpsemi reproduce --table 1 --seeds 0,1,2` gives the same rows at every labeled fraction.

# %%
sup_mean = np.mean([res["supervised", s]["test_pck"] for s in seeds])
full_mean = np.mean([full[s]["test_pck"] for s in seeds])
lines = [f"At the {cfg.preset} preset with {labeled:.0%} labels, test PCK@0.1 over split seeds {seeds}: supervised "
         f"{sup_mean:.2f}, supervised with every label {full_mean:.2f}."]
for name in SEMI:
    pck = [res[name, s]["test_pck"] for s in seeds]
    closed = (f"; gap closed {gap(name, seeds[0]):.0f} % on split seed {seeds[0]}, "
              f"{np.mean([gap(name, s) for s in seeds]):.0f} % on the mean of the seeds")
    lines.append(f"- {name}: {', '.join(f'{p:.2f}' for p in pck)} (mean {np.mean(pck):.2f}, "
                 f"{np.mean(pck) - sup_mean:+.2f} over supervised){closed if report_gaps else ''}.")
above = [n for n in SEMI if np.mean([res[n, s]["test_pck"] for s in seeds]) > sup_mean]
lines.append(f"Rows above supervised on the mean: {', '.join(above) or 'none'}.")
lines.append("Unlabeled heatmap energy, first -> last evaluation (last as a share of the labeled crops' energy): "
             + "; ".join(f"{name.split(' ')[0]} {e[0]:.3f} -> {e[1]:.3f} ({e[1] / e[2]:.2f})"
                         for name, e in energy.items()) + ".")
if not report_gaps:
    lines.append(config.plumbing_note(cfg.preset))
if mouse:
    (n0, m0), (n1, m1) = mouse.items()
    lines.append(f"Mirror-mouse: {n0} {m0['test_pck']:.2f} PCK / {m0['test_pixel_error']:.2f} px, {n1} "
                 f"{m1['test_pck']:.2f} PCK / {m1['test_pixel_error']:.2f} px on {m1['n_unlabeled']} video frames.")
print("\n".join(lines))

# %%
report.record({**{f"test_pck_{n.split(' ')[0].lower()}": float(np.mean([res[n, s]["test_pck"] for s in seeds]))
                  for n in ROWS},
               "test_pck_supervised_100": float(full_mean),
               **({"gap_closed_mean_teacher_seed0": gap("mean_teacher", seeds[0]),
                   "gap_closed_dual_seed0": gap("dual", seeds[0]),
                   "gap_closed_mean_teacher_mean": float(np.mean([gap("mean_teacher", s) for s in seeds])),
                   "gap_closed_dual_mean": float(np.mean([gap("dual", s) for s in seeds]))} if report_gaps else {}),
               **{f"energy_{k}_{w}": v[i] for k, v in zip(("consistency", "mean_teacher", "dual"), energy.values())
                  for i, w in enumerate(("first", "last"))},
               **{f"energy_share_{k}": v[1] / v[2] for k, v in zip(("consistency", "mean_teacher", "dual"),
                                                                  energy.values())},
               "seeds": len(seeds),
               **({"mouse_test_pck_supervised": mouse["supervised"]["test_pck"],
                   "mouse_test_pck_semi": list(mouse.values())[1]["test_pck"],
                   "mouse_error_px_supervised": mouse["supervised"]["test_pixel_error"],
                   "mouse_error_px_semi": list(mouse.values())[1]["test_pixel_error"]} if mouse else {})},
              "13_after_the_paper", out_dir, cfg.preset)
