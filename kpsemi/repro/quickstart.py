"""The main job: the paper's headline comparison on the embedded dataset, as a table and two figures.

    python -m kpsemi quickstart [--preset demo] [--out results/quickstart]

Trains (or reuses the identical run in results/runs/, see kpsemi.runs.cached) supervised at 5 % labels, the full method (SC + TE + TI) at 5 %
labels, and supervised at 100 % labels, then writes results.md/csv (test and validation PCK@0.1; the share of the
gap closed, except at the smoke preset, whose numbers only test the plumbing), results.png (bars) and predictions.png (the two 5 % models' predicted keypoints on the same test crops).
"""
import os

import matplotlib
import matplotlib.pyplot as plt

from kpsemi import config, data, draw, runs
from kpsemi.method import evaluate, metrics, models

RUNS = [  # (name, losses, labeled fraction)
    ("supervised 5%", ("sup",), 0.05),
    ("SC+TE+TI 5% (ours)", ("sup", "sc", "te", "ti"), 0.05),
    ("supervised 100%", ("sup",), 1.0),
]


def run(preset=None, out=os.path.join("results", "quickstart"), progress=True):
    cfg0 = config.get(preset)
    rows, results, dirs = [], {}, {}
    for name, losses, lab in RUNS:
        cfg = config.get(cfg0.preset, losses=losses, labeled=lab)
        if progress and not os.path.exists(os.path.join(runs.run_dir(cfg), "metrics.json")):
            print(f"training {name} ({cfg0.preset} preset) ...", flush=True)
        m, dirs[name] = runs.cached(cfg, progress=progress)   # shared with the notebooks' identical runs
        results[name] = m
        rows.append({"method": name, "labeled": f"{lab:.0%}", f"test {m['metric']}": round(m["test_pck"], 2),
                     f"val {m['metric']}": round(m["val_pck"], 2), "steps": m["steps"],
                     "train s": round(m["seconds"])})
    md = draw.write_table(rows, os.path.join(out, "results"))
    md += "\n\n" + summary(cfg0, *(results[n]["test_pck"] for n, _, _ in RUNS))
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md + "\n")
    _figures(cfg0, results, dirs, out)
    return md


def summary(cfg, lo, ours, hi):
    """The line under the results table: data and preset, then the share of the gap between supervised 5 % (lo) and
    100 % (hi) that SC+TE+TI at 5 % (ours) closes; at the smoke preset the plumbing note instead of that share."""
    head = (f"Embedded dataset ({cfg.synth_size}), preset {cfg.preset} ({cfg.backbone}, {cfg.input_size} px input, "
            f"up to {cfg.max_steps} steps).")
    note = config.plumbing_note(cfg.preset)
    if note:
        return f"{head} {note}"
    return (f"{head} Gap between supervised 5 % and 100 % closed by SC+TE+TI: "
            f"{metrics.gap_closed(lo, ours, hi):.0f} %.")


def _figures(cfg0, results, dirs, out):
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(results)
    ax.barh(names, [results[n]["test_pck"] for n in names], color=["#999", "#d62728", "#555"])
    for i, n in enumerate(names):
        ax.text(results[n]["test_pck"] + 0.5, i, f"{results[n]['test_pck']:.1f}", va="center")
    ax.set_xlabel("test PCK@0.1 (%)")
    ax.set_xlim(0, 100)
    ax.set_title(f"{cfg0.preset} preset" + (": a plumbing test, not a result" if cfg0.preset == "smoke" else ""),
                 fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "results.png"), dpi=120)
    test = data.load(cfg0.dataset, "test", cfg0.input_size, synth_size=cfg0.synth_size, seed=cfg0.data_seed,
                     progress=False)
    idx, preds = list(range(6)), {}
    for name in names[:2]:
        model, c, _ = models.load_model(os.path.join(dirs[name], "best.pt"))
        preds[name] = evaluate.predict(model, test.subset(idx), c["stride"])[0]     # (6, K, 2)
    predictions_figure(test, idx, preds).savefig(os.path.join(out, "predictions.png"), dpi=110)
    plt.close("all")


def predictions_figure(data, idx, preds):
    """One row of crops `idx` of `data` per model, with its predicted keypoints (K, 2) per crop as dots joined by
    the skeleton; each row is labelled in a margin of its own, left of the crops."""
    fig, axes = plt.subplots(len(preds), len(idx), figsize=(0.5 + 2.1 * len(idx), 0.5 + 2.1 * len(preds)),
                             squeeze=False)
    for row, pred in zip(axes, preds.values()):
        for ax, i, p in zip(row, idx, pred):
            draw.keypoints(ax, data[i]["image"], p, data.meta)
    fig.suptitle("predicted keypoints on the same test crops")
    fig.tight_layout(rect=(0.04, 0, 1, 0.95), h_pad=0.8)
    for row, name in zip(axes, preds):
        box = row[0].get_position()
        fig.text(0.02, (box.y0 + box.y1) / 2, name, rotation=90, ha="center", va="center", fontsize=9)
    return fig
