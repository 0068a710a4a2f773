"""Evaluate a trained run on any labeled set — a COCO keypoints file or a DeepLabCut project (all its labeled
frames or one split) — per keypoint: PCK@0.1 (PCKh@0.5 for MPII-style runs), mean error in original pixels and in
percent of the box, as a table (Markdown + CSV + JSON) and a plot.

    python -m kpsemi evaluate --run runs/mouse --dlc my-project --split test
    python -m kpsemi evaluate --run runs/mouse --coco labeled.json
    res = assess.evaluate_run("runs/mouse", dlc_project="my-project", split="test")   # the Python twin

The crops and the decoding are those of the run's own test evaluation (data.materialize, evaluate.predict,
metrics.pck), so on the run's test split the PCK is the test_pck in its metrics.json.
"""
import json
import os

import torch

from kpsemi import draw
from kpsemi.data import crops as D
from kpsemi.data.sources import coco, dlc
from kpsemi.errors import UserError
from kpsemi.method import evaluate, metrics
from kpsemi.paths import write_json_atomic
from kpsemi.predict.infer import check_names, load_run

SPLITS = ("all", "train", "val", "test")


def labeled_set(run_dir, cfg, meta, coco_json=None, dlc_project=None, split="all", image_root=None):
    """(name, [records.Instance]) of the labeled set, its keypoint names checked against the run's."""
    if bool(coco_json) == bool(dlc_project):
        raise UserError("give exactly one of --coco JSON, --dlc PROJECT")
    if coco_json:
        if split != "all":
            raise UserError("--split applies to --dlc projects; a COCO file is evaluated whole")
        m, inst = coco.load_coco(coco_json, image_root=image_root)
        check_names(m.keypoints, meta, coco_json, run_dir)
        return os.path.splitext(os.path.basename(coco_json))[0], inst
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    # the seeded 80/10/10 frame split a run of this project was trained with (runs.load_data)
    m, inst = dlc.load_project(dlc_project) if split == "all" else dlc.load_split(dlc_project, split,
                                                                                 seed=cfg["data_seed"])
    check_names(m.keypoints, meta, dlc.find_csvs(dlc_project)[0], run_dir)
    return f"{os.path.basename(os.path.normpath(dlc_project))}-{split}", inst


def per_keypoint(pred, d, alpha):
    """Rows {keypoint, labeled, PCK, error px, error % of box} per keypoint and for all keypoints (last row)."""
    r = metrics.pck(pred, d.keypoints, d.norm, alpha)
    lab = d.keypoints[..., 2] > 0                                     # (N, K)
    dist = (pred - d.keypoints[..., :2]).norm(dim=-1)                 # (N, K) crop pixels
    px = dist / d.transforms[:, 0, 0].float()[:, None]                # original pixels
    pct = 100 * dist / d.norm[:, None]                                # percent of the normaliser (box side)

    def mean(v, m):
        return float(v[m].mean()) if m.any() else float("nan")

    rows = [{"keypoint": name, "labeled": int(lab[:, k].sum()), "pck": r.per_keypoint[k],
             "error_px": mean(px[:, k], lab[:, k]), "error_percent": mean(pct[:, k], lab[:, k])}
            for k, name in enumerate(d.meta.keypoints)]
    rows.append({"keypoint": "all", "labeled": r.count, "pck": r.mean, "error_px": mean(px, lab),
                 "error_percent": mean(pct, lab)})
    return rows


def evaluate_run(run_dir, coco_json=None, dlc_project=None, split="all", image_root=None, out=None, device=None,
                 progress=True):
    """Evaluate RUN_DIR/best.pt on a labeled set; writes evaluation.md/.csv/.json/.png under `out` (default
    RUN_DIR/evaluate/<set name>) and returns {'name', 'metric', 'pck', 'pixel_error', 'error_percent', 'rows',
    'instances', 'run_test_pck', 'out'}."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, meta = load_run(run_dir, device)
    name, inst = labeled_set(run_dir, cfg, meta, coco_json, dlc_project, split, image_root)
    d = D.materialize(meta, inst, cfg["input_size"], progress=progress, desc=f"crops of {name}")
    pred, _ = evaluate.predict(model, d, cfg["stride"], device=device, amp=cfg["amp"])
    a = evaluate.alpha_for(meta)
    metric = f"{'PCKh' if meta.metric == 'pckh' else 'PCK'}@{a:g}"
    rows = per_keypoint(pred, d, a)
    out = out or os.path.join(run_dir, "evaluate", name)
    os.makedirs(out, exist_ok=True)
    table = draw.write_table(rows, os.path.join(out, "evaluation"),
                               ["keypoint", "labeled", "pck", "error_px", "error_percent"])
    run_test = None
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        with open(os.path.join(run_dir, "metrics.json")) as f:
            run_test = json.load(f).get("test_pck")
    res = {"name": name, "metric": metric, "pck": rows[-1]["pck"], "pixel_error": rows[-1]["error_px"],
           "error_percent": rows[-1]["error_percent"], "instances": len(d), "rows": rows, "run_test_pck": run_test,
           "run": run_dir, "out": out, "table": table}
    write_json_atomic({k: v for k, v in res.items() if k != "table"}, os.path.join(out, "evaluation.json"), indent=1)
    plot(rows, f"{os.path.basename(os.path.normpath(run_dir))} on {name} ({len(d)} instances)",
         metric).savefig(os.path.join(out, "evaluation.png"), dpi=100)
    return res


def plot(rows, title, metric="PCK@0.1"):
    """Per-keypoint PCK and error in % of the box as bars, the overall values as dashed lines."""
    from matplotlib.figure import Figure
    kp, all_ = rows[:-1], rows[-1]
    fig = Figure(figsize=(max(6.0, 0.45 * len(kp) + 2), 5.2))
    a, b = fig.subplots(2, 1, sharex=True)
    x = range(len(kp))
    a.bar(x, [r["pck"] for r in kp], color="tab:blue")
    a.axhline(all_["pck"], ls="--", color="k", lw=1, label=f"all: {all_['pck']:.2f}")
    a.set_ylabel(f"{metric} (%)")
    a.set_ylim(0, 100)
    a.legend(fontsize=8, loc="lower right")
    b.bar(x, [r["error_percent"] for r in kp], color="tab:orange")
    b.axhline(all_["error_percent"], ls="--", color="k", lw=1,
              label=f"all: {all_['error_percent']:.2f} % = {all_['error_px']:.1f} px")
    b.set_ylabel("mean error (% of box)")
    b.legend(fontsize=8, loc="upper right")
    b.set_xticks(list(x), [r["keypoint"] for r in kp], rotation=70, fontsize=7)
    a.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
