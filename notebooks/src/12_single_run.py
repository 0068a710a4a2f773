# %% [markdown]
# # 12 · One training run — on the embedded set, a paper dataset, or your own data
#
# Everything the other notebooks compare is made of runs like this one: pick the data, the labeled fraction and
# the losses, train, and look at the result. `python -m kpsemi reproduce` executes this notebook once per cell of
# a table (papermill injects the parameters below), and it is the place to start with **your own data**:
#
# - a COCO keypoints set: `train_json`, `val_json`, `test_json` (+ `unlabeled_dir`, a folder of unlabeled images);
#   the labeled fraction picks which images of the train JSON keep their labels, the rest become unlabeled;
# - a DeepLabCut project: `dlc_project` (CollectedData*.csv + videos/, from which unlabeled frames are sampled);
# - a paper dataset after `python -m kpsemi data download NAME`: `dataset = "lsp" | "mpii" | "cub" | "atrw"`.

# %% tags=["parameters"]
preset = None                     # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
dataset = "synthetic"             # synthetic | lsp | mpii | cub | atrw (ignored for COCO / DLC data)
losses = ["sup", "sc", "te", "ti"]  # also the baselines' gen, attr, elt_lm (see 08_baselines)
method = "standard"               # "standard" (train with `losses`) | "pl" (pseudo-labels)
labeled = 0.05
split_seed = 0
unlabeled_fraction = 1.0
gt_in_unsup = True
weights = {}                      # overrides of the loss weights, e.g. {"sc": 1.0}
train_json = None
val_json = None
test_json = None
unlabeled_dir = None
dlc_project = None
out_dir = None                    # None: results/12_single_run/ (the run itself: results/runs/, shared)

# %%
import json

import matplotlib.pyplot as plt

from kpsemi import config, draw, runs
from kpsemi.method import evaluate, models
from kpsemi.repro import report

cfg = config.get(preset)
cfg = config.get(cfg.preset, dataset=dataset, losses=tuple(losses), labeled=labeled, split_seed=split_seed,
                 unlabeled_fraction=unlabeled_fraction, gt_in_unsup=gt_in_unsup,
                 weights={**cfg.weights, **weights}, method=method)
spec = runs.DataSpec(train_json=train_json, val_json=val_json, test_json=test_json,
                     unlabeled_dir=unlabeled_dir, dlc_project=dlc_project)
out = report.notebook_dir("12_single_run", out_dir)
print(json.dumps(config.to_dict(cfg), indent=None)[:400], "...")

# %% [markdown]
# ## Train
# The run lives in `results/runs/<configuration>/` (metrics.json, history.jsonl, best.pt, last.pt), shared with
# every notebook that asks for the same configuration; a killed run resumes. Batches mix labeled and unlabeled
# crops (50 % / 50 %); validation PCK is checked every `eval_every` steps, the
# best weights are kept and training stops when validation stops improving (`patience`) or at `max_steps`.

# %%
m, run = runs.cached(cfg, spec, progress=True)   # reused when any notebook already ran this configuration
print(f"test {m['metric']} {m['test_pck']:.2f} (val {m['val_pck']:.2f}) after {m['steps']} steps, "
      f"{m['seconds']:.0f} s; {m['n_labeled']} labeled / {m['n_unlabeled']} unlabeled training samples")

# %% [markdown]
# ## Learning curve and per-keypoint accuracy

# %%
hist = [json.loads(line) for line in open(f"{run}/history.jsonl")]
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.4))
a.plot([h["step"] for h in hist], [h["val_pck"] for h in hist], "o-")
a.set_xlabel("step")
a.set_ylabel(f"val {m['metric']} (%)")
names = list(m["test_per_keypoint"])
b.bar(range(len(names)), [m["test_per_keypoint"][n] for n in names])
b.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
b.set_ylabel(f"test {m['metric']} (%)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Predictions on test crops (crosses) with the ground truth (dots)

# %%
_, _, test, _, _ = runs.load_data(cfg, spec, progress=False)
model, c, _ = models.load_model(f"{run}/best.pt")
pred, _ = evaluate.predict(model, test.subset(range(min(12, len(test)))), c["stride"])
fig = draw.grid(test, range(min(12, len(test))), cols=6, pred=pred)
plt.show()

# %%
report.record({"test_pck": m["test_pck"], "val_pck": m["val_pck"], "test_error_percent": m["test_error_percent"],
               "steps": m["steps"], "seconds": m["seconds"],
               "n_labeled": m["n_labeled"], "n_unlabeled": m["n_unlabeled"],
               "test_per_keypoint": m["test_per_keypoint"]}, "12_single_run", out_dir, cfg.preset)
