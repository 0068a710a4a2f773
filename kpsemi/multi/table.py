"""The SemiMultiPose honeybee table (seed 002, Table 1): rows from runs of train.py, the seed's layout beside its
numbers, and the test-AP curves (the seed's Fig. 3). `python -m kpsemi reproduce --table smp` calls
`reproduce_table`.

    rows = table.reproduce_rows(("train5", "train25"), seeds=(0,), preset="demo", root="../shared/...")
"""
import os

import matplotlib
import matplotlib.pyplot as plt

from kpsemi import draw
from kpsemi.errors import UserError
from kpsemi.multi import data as multi_data, eval as multi_eval
from kpsemi.multi.train import METHODS, get, run_methods
from kpsemi.paths import results_dir

# The seed's honeybee test OKS AP (0.5:0.95) for Train135 / Train25 / Train5 (reference numbers, not our results)
SMP_HONEYBEE = {
    "SemiMultiPose": {"Train135": 0.853, "Train25": 0.837, "Train5": 0.776},
    "SemiMultiPose-labeled": {"Train135": 0.847, "Train25": 0.824, "Train5": 0.743},
    "DirectPose": {"Train135": 0.846, "Train25": 0.819, "Train5": 0.734},
    "SLEAP bottom-up": {"Train135": 0.811, "Train25": 0.779, "Train5": 0.662},
}
PAPER_AP = {m: {ts.lower(): ap for ts, ap in SMP_HONEYBEE[name].items()}
            for m, name in METHODS.items()}                                    # method -> train set -> AP


def reproduce_rows(train_sets=("train5", "train25"), seeds=(0,), preset=None, root=None, out_dir=None,
                   methods=tuple(METHODS), progress=True, resume=True, **overrides):
    """Rows of the seed's honeybee table: one per (training set, subset seed, method) with our test AP and the
    paper's. Runs are kept under out_dir/<train_set>-<seed>/<method>/ (default results/smp/); finished runs of the
    same config are read back, killed ones resume."""
    out_dir = out_dir or os.path.join(results_dir(), "smp")
    rows = []
    for ts in train_sets:
        for s in (seeds if ts != "train135" else (0,)):
            cfg = get(preset, "honeybee", root=root, train_set=ts, subset_seed=s, **overrides)
            res = run_methods(cfg, os.path.join(out_dir, f"{ts}-{s}"), methods, progress, resume)
            for m, r in res.items():
                rows.append({"train_set": ts, "subset_seed": s, "method": METHODS[m], "test_ap": r["test_ap"],
                             "test_ap50": r["test_ap50"], "paper_ap": PAPER_AP[m][ts], "steps": r["steps"],
                             "seconds": r["seconds"], "working_size": "x".join(map(str, r["working_size"])),
                             "preset": cfg.preset, "history": r["history"]})
    return rows


def summarize(rows):
    """The seed's Table 1 layout from `reproduce_rows` rows: one row per method; per training set our test AP
    (mean ± standard deviation over subsets when there are several) beside the paper's."""
    out = []
    for m, name in METHODS.items():
        r = {"method": name}
        for ts in ("train135", "train25", "train5"):
            v = [x["test_ap"] for x in rows if x["method"] == name and x["train_set"] == ts]
            if v:
                mean, sd = sum(v) / len(v), (sum((a - sum(v) / len(v)) ** 2 for a in v) / len(v)) ** 0.5
                r[f"AP-{ts[5:]}"] = f"{mean:.3f} ± {sd:.3f} (n={len(v)})" if len(v) > 1 else f"{mean:.3f}"
                r[f"paper AP-{ts[5:]}"] = f"{PAPER_AP[m][ts]:.3f}"
        out.append(r)
    return out


def reproduce_table(preset=None, train_sets=("train5", "train25"), seeds=(0,), root=None, out_dir=None,
                    progress=True):
    """`python -m kpsemi reproduce --table smp`: the honeybee rows, written to out_dir/smp.md|csv (the seed's
    layout), runs.md|csv (one row per run) and curves-<set>-<seed>.png (test AP over steps, the seed's Fig. 3);
    returns the Markdown of both tables."""
    matplotlib.use("Agg")
    out_dir = out_dir or os.path.join(results_dir(), "reproduce", "tablesmp")
    for ts in train_sets:
        if ts not in multi_data.SUBSETS:
            raise UserError(f"unknown honeybee training set {ts!r}: use {', '.join(multi_data.SUBSETS)}")
    rows = reproduce_rows(train_sets, seeds, preset, root, os.path.join(out_dir, "runs"), progress=progress)
    os.makedirs(out_dir, exist_ok=True)
    cfg = get(preset, "honeybee", root=root)
    for ts, s in sorted({(r["train_set"], r["subset_seed"]) for r in rows}):
        res = {m: {"history": r["history"]} for m in METHODS for r in rows
               if r["method"] == METHODS[m] and (r["train_set"], r["subset_seed"]) == (ts, s)}
        ax = multi_eval.plot_curves(res, cfg, title=f"honeybee {ts} subset {s}: test OKS AP ({cfg.preset})")
        ax.figure.savefig(os.path.join(out_dir, f"curves-{ts}-{s}.png"), dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
    runs = [{k: (f"{v:.0f}" if k == "seconds" else f"{v:.3f}" if isinstance(v, float) else v)
             for k, v in r.items() if k != "history"} for r in rows]
    head = (f"SemiMultiPose honeybee test OKS AP (0.50:0.95, sigma^2 = 1) at preset {cfg.preset}: {cfg.backbone}, "
            f"frames at {cfg.scale:g} x 1280x720, {cfg.max_steps} steps (alpha L_fl from {cfg.fl_start}, "
            f"beta L_fu from {cfg.fu_start}); the seed: ResNet-50 ImageNet, full frames, 15k iterations, mean of "
            "five subsets")
    md = head + "\n\n" + draw.write_table(summarize(rows), os.path.join(out_dir, "smp"))
    return md + "\n\nruns:\n\n" + draw.write_table(runs, os.path.join(out_dir, "runs"))
