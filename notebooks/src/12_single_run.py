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
#
# The last section runs a trained model on new video, evaluates it per keypoint and picks the frames to label next
# (on `dlc_project`, or on the mirror-mouse example project when it is present).

# %% tags=["parameters"]
preset = None                     # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
dataset = "synthetic"             # synthetic | lsp | mpii | cub | atrw (ignored for COCO / DLC data)
losses = ["sup", "sc", "te", "ti"]  # also the baselines' gen, attr, elt_lm (see 08_baselines)
method = "standard"               # "standard" (train with `losses`) | "pl" (pseudo-labels) | "mean_teacher" |
                                  # "dual" | "consistency" (losses of their own; see 13_after_the_paper)
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
own_data_loop = True              # the predict -> evaluate -> frames-to-label section (off in reproduce's grid)

# %%
import json
import os

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

# %% [markdown]
# ## Own data end to end: predict on a video, evaluate, pick the frames to label next
#
# After training comes what DeepLabCut, SLEAP and Lightning Pose users do next: run the model on new video, look
# at the result, and label more frames where the model is least sure. On the command line:
#
# ```bash
# python -m kpsemi train --preset demo --dlc my-project --labeled 1.0 --losses sup --out runs/mouse
# python -m kpsemi predict --run runs/mouse --video my-project/videos/a.mp4 --out pred/a   # CSV, JSON, MP4, frames
# python -m kpsemi evaluate --run runs/mouse --dlc my-project --split test                  # PCK per keypoint
# ```
#
# Here the loop uses the run above when `dlc_project` is set; otherwise, when the mirror-mouse project is present
# (`../shared/datasets/mirror-mouse` beside the repository: a DeepLabCut project of one mouse seen from the top and
# in a mirror, 90 labeled frames, 17 keypoints, a 994-frame video), a supervised run on it at this preset. The
# smoke preset trains it for 20 steps and predicts only the first 48 frames of the video. `docs/own_data.md`
# describes every file written.

# %%
from IPython.display import Image, display

import kpsemi
from kpsemi import predict
from kpsemi.data.sources import dlc

example = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(kpsemi.__file__)), "..", "..", "shared",
                                        "datasets", "mirror-mouse"))
loop = None
if not own_data_loop:
    print("own-data loop skipped: own_data_loop = False")
elif dlc_project:
    loop = {"project": dlc_project, "run": run}
elif os.path.isdir(example):
    mm_cfg = config.get(cfg.preset, losses=("sup",), labeled=1.0,        # smoke: 20 steps keep the tests fast
                        max_steps=config.by_preset(cfg.preset, smoke=20, demo=None, paper=None))
    mm_spec = runs.DataSpec(dlc_project=example,
                            video_frames=config.by_preset(cfg.preset, smoke=16, demo=500, paper=500))
    mm, mm_run = runs.cached(mm_cfg, mm_spec, progress=True)
    print(f"mirror-mouse, supervised, all {mm['n_labeled']} training frames labeled: test {mm['metric']} "
          f"{mm['test_pck']:.2f} after {mm['steps']} steps ({mm['seconds']:.0f} s)")
    loop = {"project": example, "run": mm_run}
else:
    print(f"own-data loop skipped: {example} is not present; set dlc_project to a DeepLabCut project of yours "
          "to run it on your own data")

# %% [markdown]
# **Predict** every frame of the project's first video (cropped and decoded exactly as in training, mapped back to
# the video's pixels): `predictions.csv` in DeepLabCut's layout (x, y, likelihood = heatmap peak),
# `predictions.json` (COCO results), `labeled.mp4` with the keypoints drawn (hollow: likelihood below 0.5), and the
# frames where the model is least sure — its predictions disagree most between the crop and its rescaled (and, with
# left/right keypoints, flipped) views, PL's ensemble views — as a list, a contact sheet and PNG files to label.

# %%
if loop:
    videos = dlc.project_videos(loop["project"])
    pred_dir = os.path.join(out, "own_data", "predict")
    pr = predict.predict(loop["run"], pred_dir, video=videos[0] if videos else None,
                        images=None if videos else os.path.join(loop["project"], "labeled-data"),
                        max_frames=config.by_preset(cfg.preset, smoke=48, demo=None, paper=None))
    print(f"predicted {pr['frames']} frames of {pr['input']} in {pr['seconds']:.1f} s ({pr['frames_per_second']} "
          f"frames/s on {pr['device']}) -> {pred_dir}: {', '.join(pr['files'])}")
    display(Image(os.path.join(pred_dir, "frames_to_label.png"), width=900))
    display(Image(os.path.join(pred_dir, "frame_scores.png"), width=900))

# %% [markdown]
# **Evaluate** on the project's test frames (the seeded 80/10/10 split the run was trained with): the same crops and
# decoding as the run's own test evaluation, so the PCK is the run's test PCK, now per keypoint with errors in
# pixels and in percent of the box (for DeepLabCut frames, the whole frame).

# %%
if loop:
    ev = predict.evaluate_run(loop["run"], dlc_project=loop["project"], split="test",
                              out=os.path.join(out, "own_data", "evaluate"), progress=False)
    print(f"{ev['metric']} {ev['pck']:.2f} on {ev['instances']} test frames (the run's metrics.json: "
          f"{ev['run_test_pck']:.2f}); mean error {ev['pixel_error']:.1f} px = {ev['error_percent']:.2f} % of the box")
    display(Image(os.path.join(ev["out"], "evaluation.png"), width=800))

# %% [markdown]
# **Next:** label the flagged frames (`frames_to_label/imgNNNNN.png`, in the order of `frames_to_label.csv`) in
# your labeling tool, add them to the project's CollectedData CSV, and train again.

# %%
report.record({"run": os.path.basename(run),   # which run of the cache: `reproduce` checks its cells with it
               "test_pck": m["test_pck"], "val_pck": m["val_pck"], "test_error_percent": m["test_error_percent"],
               "steps": m["steps"], "seconds": m["seconds"],
               "n_labeled": m["n_labeled"], "n_unlabeled": m["n_unlabeled"],
               "test_per_keypoint": m["test_per_keypoint"],
               **({"own_data_frames": pr["frames"], "own_data_test_pck": ev["pck"]} if loop else {})},
              "12_single_run", out_dir, cfg.preset)
