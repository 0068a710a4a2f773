"""Regenerate the paper's tables: a grid of runs, each an executed notebook, then tables in the paper's layout.

    python -m kpsemi reproduce --table {1,2,3,4,fig3,seqmt} --preset P [--datasets ...] [--seeds ...] --out DIR

Every grid cell (dataset x row x label fraction x seed) runs notebooks/12_single_run.ipynb through papermill in its
own kernel process and writes DIR/cells/<cell id>/ (the executed notebook, metrics.json); the training run itself is
the shared results/runs/<configuration>/ folder (kpsemi.runs.cached), so a run a notebook already did is reused. A
cell whose metrics.json names the run its configuration resolves to now is skipped (one that another version of the
kit's defaults made runs again), and a killed run resumes, so a killed reproduction goes on where it stopped. Cells
go through one small executor interface, `run(cells, out)`: `SequentialExecutor` runs them one after another here,
`cluster.SubmititExecutor` sends each to a cluster (SLURM or local subprocesses) as a job (`--executor submitit`).
The tables are mean +- std over seeds, as Markdown and CSV, with the paper's numbers and the difference for the
datasets the paper has. `seqmt` is Honari et al.'s HGR1 table (L, L+A, L+ELT, L+ELT+A) on the embedded set: mean
landmark error in percent of the normaliser (lower is better, the seed's measure) with PCK beside, and the seed's
HGR1 errors as reference rows.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from kpsemi import config, draw, runs
from kpsemi.errors import UserError
from kpsemi.paths import notebooks_dir
from kpsemi.repro import paper

NOTEBOOK = os.path.join(notebooks_dir(), "12_single_run.ipynb")
FULL = ("sup", "sc", "te", "ti")
TABLES = ("1", "2", "3", "4", "fig3", "seqmt")
# Table 1: supervised, PL, ELT, Gen, ours (the paper's rows), mean_teacher and dual (after the paper,
# kpsemi/baselines/); the rows that need unlabeled images are left out at 100 % labels
NEED_UNLABELED = ("pl", "mean_teacher", "dual")
# Honari's Seq-MT table on the embedded set: landmarks (L) + attributes (A) + landmark ELT, as the seed's HGR1 rows
SEQMT_ROWS = {"L": ["sup"], "L+A": ["sup", "attr"], "L+ELT": ["sup", "elt_lm"], "L+ELT+A": ["sup", "elt_lm", "attr"]}


@dataclass
class Cell:
    """One grid cell: the parameters of one 12_single_run notebook execution."""
    table: str
    row: str
    dataset: str
    labeled: float
    split_seed: int
    preset: str
    losses: list
    unlabeled_fraction: float = 1.0
    gt_in_unsup: bool = True
    weights: dict = field(default_factory=dict)
    method: str = "standard"

    @property
    def id(self):
        h = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dataset}-{self.row}-{self.labeled:g}-s{self.split_seed}-{h}".replace(" ", "_").replace("+", "")


def _rows(table):
    """(row name, overrides) of a table."""
    if table == "1":
        return [("supervised", {"losses": ["sup"]}), ("pl", {"losses": ["sup"], "method": "pl"}),
                ("elt", {"losses": ["sup", "elt"]}), ("gen", {"losses": ["sup", "gen"]}),
                ("ours", {"losses": list(FULL)}),
                ("mean_teacher", {"losses": ["sup", "mt"], "method": "mean_teacher"}),      # after the paper
                ("dual", {"losses": ["sup", "dual"], "method": "dual"})]
    if table == "seqmt":
        return [(name, {"losses": losses}) for name, losses in SEQMT_ROWS.items()]
    if table == "2":
        return [(name, {"losses": ["sup"] + [x for x in ("sc", "te", "ti") if x in name.split("+")]})
                for name in paper.TABLE2_LSP]
    if table == "4":
        return [("with gt heatmaps", {"losses": list(FULL)}),
                ("without gt heatmaps", {"losses": list(FULL), "gt_in_unsup": False})]
    raise UserError(f"unknown table {table!r}")


def grid(table, preset, datasets=("synthetic",), seeds=(0,), fractions=paper.FRACTIONS):
    """The cells of a table."""
    cells = []
    for ds in datasets:
        if table in ("1", "2", "4", "seqmt"):
            for row, kw in _rows(table):
                for f in fractions:
                    if row in NEED_UNLABELED and f >= 1.0:     # nothing is unlabeled at 100 % labels
                        continue
                    cells += [Cell(table, row, ds, f, s, preset, **kw) for s in seeds]
        elif table == "3":
            cells += [Cell("3", "supervised", ds, 0.05, s, preset, ["sup"]) for s in seeds]
            cells += [Cell("3", f"ours {u:g}", ds, 0.05, s, preset, list(FULL), unlabeled_fraction=u)
                      for u in paper.UNLABELED_FRACTIONS for s in seeds]
        elif table == "fig3":
            for loss, values in paper.FIG3_GRID.items():
                for v in values:
                    cells += [Cell("fig3", f"{loss}={v:g}", ds, fractions[0], s, preset, list(FULL),
                                   weights={loss: v}) for s in seeds]
        else:
            raise UserError(f"unknown table {table!r}: choose {', '.join(TABLES)}")
    return cells


def cell_config(cell):
    """The configuration notebook 12 builds from a cell's parameters (its first code cells do the same)."""
    cfg = config.get(cell.preset)
    return config.get(cfg.preset, dataset=cell.dataset, losses=tuple(cell.losses), labeled=cell.labeled,
                      split_seed=cell.split_seed, unlabeled_fraction=cell.unlabeled_fraction,
                      gt_in_unsup=cell.gt_in_unsup, weights={**cfg.weights, **cell.weights}, method=cell.method)


def cell_metrics(out, cell):
    """The metrics a finished cell recorded, or None: none recorded yet, or recorded from another run than the one
    the cell's configuration resolves to now (the kit's defaults for that row changed since, e.g. a method's own
    preset values: config.METHOD_PRESETS), so that no table mixes in a stale number."""
    p = os.path.join(cell_dir(out, cell), "metrics.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        m = json.load(f)["metrics"]
    return m if m.get("run") == os.path.basename(runs.run_dir(cell_config(cell))) else None


def todo(cells, out, progress=True):
    """The cells to run: those without metrics, or with metrics of another run than their configuration's now
    (the others are done and skipped)."""
    left = [c for c in cells if cell_metrics(out, c) is None]
    stale = sum(os.path.exists(os.path.join(cell_dir(out, c), "metrics.json")) for c in left)
    if progress and len(left) < len(cells):
        print(f"{len(cells) - len(left)} of {len(cells)} cells already done; running {len(left)}")
    if progress and stale:
        print(f"{stale} of them do not name the run their configuration resolves to now (recorded under other "
              "defaults of the kit): running them again")
    return left


def cell_dir(out, cell):
    return os.path.join(out, "cells", cell.id)


class SequentialExecutor:
    """Runs cells one after another, each as a papermill execution (its own kernel process)."""

    def __init__(self, progress=True):
        self.progress = progress

    def run(self, cells, out):
        for c in tqdm(todo(cells, out, self.progress), desc="grid cells", disable=not self.progress):
            run_cell(c, cell_dir(out, c))


def run_cell(cell, folder):
    """Execute 12_single_run.ipynb with the cell's parameters into `folder` (the executed notebook, cell.json and,
    from the notebook's last cell, metrics.json); returns `folder`."""
    import papermill as pm      # the notebooks extra (pip install kpsemi[notebooks]), only for the grid cells
    os.makedirs(folder, exist_ok=True)
    params = {k: v for k, v in asdict(cell).items() if k not in ("table", "row")}
    params["out_dir"] = os.path.abspath(folder)
    params["own_data_loop"] = False                 # a grid cell is one run, not the own-data section
    with open(os.path.join(folder, "cell.json"), "w") as f:
        json.dump(asdict(cell), f, indent=1)
    pm.execute_notebook(NOTEBOOK, os.path.join(folder, "12_single_run.ipynb"), parameters=params,
                        cwd=os.path.dirname(NOTEBOOK), progress_bar=False, kernel_name="python3")
    return folder


def collect(cells, out):
    """[(cell, metrics dict)] of the finished cells."""
    done = []
    for c in cells:
        m = cell_metrics(out, c)
        if m is not None:
            done.append((c, m))
    return done


def _stats(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _paper_value(table, dataset, row, labeled):
    i = paper.FRACTIONS.index(labeled) if labeled in paper.FRACTIONS else None
    if i is None:
        return None
    if table == "1" and dataset in paper.TABLE1 and row in paper.TABLE1[dataset]:
        return paper.TABLE1[dataset][row][i]
    if table == "2" and dataset == "lsp":
        return (paper.TABLE2_LSP[row][i], None)
    if table == "4" and dataset == "lsp":
        return (paper.TABLE4_LSP[row][i], None)
    return None


def render(table, done, out):
    """Write DIR/table<table>.md/.csv (and fig3.png); returns the Markdown."""
    if table == "seqmt":
        return _render_seqmt(done, out)
    groups = {}
    for c, m in done:
        key = (c.dataset, c.row, c.labeled if table != "3" else c.unlabeled_fraction)
        groups.setdefault(key, []).append(m["test_pck"])
    long_rows, cols = [], {}
    for (ds, row, x), vals in groups.items():
        mean, std, n = _stats(vals)
        ref = _paper_value(table, ds, row, x)
        if table == "3" and ds in paper.TABLE3:
            t3 = paper.TABLE3[ds]
            ref = ((t3["supervised"] if row == "supervised" else
                    t3["ours"][paper.UNLABELED_FRACTIONS.index(x)]), None) if x in paper.UNLABELED_FRACTIONS else None
        long_rows.append({"dataset": ds, "row": row, "x": x, "mean": round(mean, 2), "std": round(std, 2), "n": n,
                          "paper_mean": ref[0] if ref else "", "paper_std": ref[1] if ref and ref[1] else "",
                          "diff": round(mean - ref[0], 2) if ref else ""})
        txt = f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"
        if ref:
            txt += f" (paper {ref[0]:.2f}, Δ {mean - ref[0]:+.2f})"
        cols.setdefault((ds, row), {})[x] = txt
    os.makedirs(out, exist_ok=True)
    draw.write_table(long_rows, os.path.join(out, f"table{table}_long"))
    xs = sorted({x for (_, _, x) in groups})
    label = "unlabeled pool" if table == "3" else ("weight" if table == "fig3" else "labeled")
    wide = [{"dataset": ds, "method": row, **{f"{x:.0%} {label}" if table != "fig3" else "PCK": v.get(x, "")
                                              for x in xs}} for (ds, row), v in cols.items()]
    md = draw.write_table(wide, os.path.join(out, f"table{table}"))
    if table == "fig3":
        _fig3(done, out)
    return md


def _render_seqmt(done, out):
    groups = {}
    for c, m in done:
        groups.setdefault((c.dataset, c.row), {}).setdefault(c.labeled, []).append(m)
    xs = sorted({c.labeled for c, _ in done})
    wide = []
    for (ds, row), by_x in groups.items():
        r = {"dataset": ds, "model": f"Seq-MT ({row})"}
        for x in xs:
            ms = by_x.get(x)
            if ms:
                e, pk = _stats([m["test_error_percent"] for m in ms]), _stats([m["test_pck"] for m in ms])
                r[f"{x:.0%} labeled"] = f"{e[0]:.1f} (PCK {pk[0]:.1f})" + (f" n={e[2]}" if e[2] > 1 else "")
        wide.append(r)
    for row, vals in paper.SEQMT_HGR1.items():
        wide.append({"dataset": "HGR1 (Honari et al.)", "model": f"Seq-MT ({row})",
                     **{f"{x:.0%} labeled": f"{v:.1f}" if v is not None else "" for x, v in zip(paper.FRACTIONS, vals)
                        if x in xs}})
    os.makedirs(out, exist_ok=True)
    return draw.write_table(wide, os.path.join(out, "tableseqmt"))


def _fig3(done, out):
    matplotlib.use("Agg")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    for ax, (loss, values) in zip(axes, paper.FIG3_GRID.items()):
        ys = [[m["test_pck"] for c, m in done if c.row == f"{loss}={v:g}"] for v in values]
        ok = [(v, sum(y) / len(y)) for v, y in zip(values, ys) if y]
        if ok:
            ax.plot([str(v) for v, _ in ok], [y for _, y in ok], "o-")
        ax.set_xlabel(f"weight of {loss.upper()}")
    axes[0].set_ylabel("test PCK@0.1 (%)")
    fig.suptitle("sensitivity to the loss weights (others at their defaults)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fig3.png"), dpi=120)
    plt.close(fig)


def main(table, preset, datasets=("synthetic",), seeds=(0,), fractions=None, out="results/reproduce",
         executor=None, progress=True, rows=None):
    """Run (or resume) the grid of `table` and render it; returns the Markdown table. `rows`: only these rows of
    the table (names as in its cells, e.g. "supervised", "te+ti+sc")."""
    fractions = tuple(fractions or (paper.FRACTIONS if table != "fig3" else (0.05,)))
    cells = grid(table, preset, datasets, seeds, fractions)
    if rows:
        known = list(dict.fromkeys(c.row for c in cells))
        if set(rows) - set(known):
            raise UserError(f"--rows {','.join(sorted(set(rows) - set(known)))}: not a row of table {table}; its "
                            f"rows are {', '.join(known)}")
        cells = [c for c in cells if c.row in rows]
    (executor or SequentialExecutor(progress)).run(cells, out)
    md = render(table, collect(cells, out), out)
    note = config.plumbing_note(preset)
    if note:                                           # smoke: the table's file and what is printed say so
        md = f"{md}\n\n{note}"
        with open(os.path.join(out, f"table{table}.md"), "a") as f:
            f.write(f"\n{note}\n")
    return md
