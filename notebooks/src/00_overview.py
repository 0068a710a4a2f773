# %% [markdown]
# # 00 · Overview and a quick run
#
# **Semi-supervised keypoint localization** (Moskvyak et al., ICLR 2021) trains a keypoint detector from a *few
# labeled* images and *many unlabeled* ones. A keypoint localization network (KLN, an HRNet) predicts one heatmap
# per keypoint. Besides the supervised heatmap loss on labeled images, three unsupervised constraints use every
# image:
#
# - **SC, semantic consistency** — the features under keypoint *i*'s heatmap, *z_i*, must be classifiable as
#   keypoint *i* by a tiny keypoint classification network (KCN);
# - **TE, transformation equivariance** — heatmaps move with the image: f(g(x)) = g(f(x)) for a perspective warp g;
# - **TI, transformation invariance** — the representations *z* do not change under g.
#
# This notebook runs the whole pipeline once on the kit's **embedded dataset** (rendered animals, generated
# offline): a supervised model and the full method, both with 5 % of the labels, and a supervised model with
# all labels. The later notebooks take each piece apart.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05        # labeled fraction for the two 5 % runs
split_seed = 0
out_dir = None        # None: results/00_overview/

# %%
import matplotlib.pyplot as plt

from kpsemi import config, data, draw, runs
from kpsemi.method import evaluate, metrics, models
from kpsemi.repro import quickstart, report

cfg = config.get(preset)
out = report.notebook_dir("00_overview", out_dir)
print(f"preset {cfg.preset}: {cfg.backbone} at {cfg.input_size} px, up to {cfg.max_steps} steps; results in {out}")

# %% [markdown]
# ## The data
# Each training sample is a crop around one animal, resized to the network input. Filled dots are visible
# keypoints, hollow ones are labeled but hidden (self-occlusion, occluders); the skeleton joins them.

# %%
test = data.load("synthetic", "test", cfg.input_size, synth_size=cfg.synth_size, progress=False)
print(len(test), "test crops;", test.meta.num_keypoints, "keypoints:", ", ".join(test.meta.keypoints))
fig = draw.grid(test, range(6), cols=6, title="embedded dataset: test crops with ground truth")
plt.show()

# %% [markdown]
# ## Three runs
# `runs.cached` trains one configuration in `results/runs/<configuration>/`, or reads back the finished run of
# that very configuration (every notebook and `quickstart` share these folders), and returns its metrics and folder.
# PCK@0.1 is in percent: a keypoint is correct when it lies within 0.1 x the longer box side of the truth.
# `python -m kpsemi train ... --out DIR` runs the same training into a folder you name.

# %%
setups = {
    "supervised 5%": config.get(cfg.preset, losses=("sup",), labeled=labeled, split_seed=split_seed),
    "SC+TE+TI 5%": config.get(cfg.preset, losses=("sup", "sc", "te", "ti"), labeled=labeled,
                              split_seed=split_seed),
    "supervised 100%": config.get(cfg.preset, losses=("sup",), labeled=1.0),
}
results, folders = {}, {}
for name, c in setups.items():
    results[name], folders[name] = runs.cached(c)
print(draw.markdown([{"run": n, "test PCK@0.1": round(m["test_pck"], 2), "val PCK@0.1": round(m["val_pck"], 2),
                      "steps": m["steps"], "seconds": round(m["seconds"])} for n, m in results.items()]))

# %% [markdown]
# ## What the two 5 % models predict
# Each model's predicted keypoints on the same test crops: dots in the keypoint colours of the data figure above,
# joined by the skeleton; supervised 5 % in the top row, SC+TE+TI 5 % below (`quickstart` writes the same
# figure to predictions.png).

# %%
idx, preds = list(range(6)), {}
for name in ["supervised 5%", "SC+TE+TI 5%"]:
    model, c, _ = models.load_model(f"{folders[name]}/best.pt")
    preds[name] = evaluate.predict(model, test.subset(idx), c["stride"])[0]
fig = quickstart.predictions_figure(test, idx, preds)
plt.show()

# %% [markdown]
# **Reading the numbers.** The table above is this run's, at the preset it ran. The demo preset's numbers, with the
# machine and command that made them, are in the README: there SC+TE+TI at 5 % ends above its supervised start,
# and over three split seeds a little above the same supervised run trained on for as long without unlabeled
# images — the control that `docs/deviations.md` explains — on every seed, by a point or two. The paper closes 84 %
# of the gap on LSP with HRNet-W32 at 256 px for ~100k steps (`paper` preset, GPU). Notebook 02 checks first that
# the network can do the task at all.

# %%
lo, ours, hi = (results[n]["test_pck"] for n in setups)
record = {"test_pck_supervised_5": lo, "test_pck_ours_5": ours, "test_pck_supervised_100": hi}
if config.plumbing_note(cfg.preset) is None:        # smoke numbers only test the plumbing: no share of a gap
    record["gap_closed_percent"] = metrics.gap_closed(lo, ours, hi)
report.record(record, "00_overview", out_dir, cfg.preset)
