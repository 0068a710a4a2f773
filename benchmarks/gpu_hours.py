"""GPU-hours of the paper's tables at a preset, from the grid the kit runs and an assumed (or measured) time per step.
Nothing is trained or timed: the script counts the runs each table trains (kpsemi.repro.grid's cells; a run several
cells share, as PL's teacher and the supervised row, counted once) and the crop-views of each run's step, and
multiplies by the seconds per step you give it.

    python benchmarks/gpu_hours.py --s-per-step 0.25                   # an assumed supervised step time
    python benchmarks/gpu_hours.py --s-per-step 0.21 --s-per-semi-step 0.74   # both measured by paper_throughput.py

The model of a step's time: a step that runs V crop-views through the network (V = labeled + unlabeled crops, x2
when a loss needs the second view g(x)) takes V / batch_size x the supervised step's seconds (--s-per-step);
--s-per-semi-step replaces that for the method's own step (sup+SC+TE+TI with unlabeled crops: 4 x batch_size views).
Evaluations (every eval_every steps, on the validation split), data loading and the PL teacher's pseudo-labelling
pass are left out. Each run is counted at max_steps (an upper bound: early stopping after `patience` evaluations
without improvement ends most runs earlier) and, with --steps-share, at a share of it.
"""
import argparse
from dataclasses import replace

import kpsemi.baselines  # noqa: F401  (registers the baselines' losses: gen needs the second view)
from kpsemi import config as C
from kpsemi.method import losses
from kpsemi.repro import grid

# the datasets and split seeds the paper reports each table on (Table 1: mean +- std over three label subsets)
TABLES = {"1": (("lsp", "mpii", "cub", "atrw"), (0, 1, 2)), "2": (("lsp",), (0,)), "3": (("cub", "atrw"), (0,)),
          "4": (("lsp",), (0,))}


def cell_config(cell):
    """The run config of a grid cell, as notebooks/12_single_run.ipynb builds it."""
    base = C.get(cell.preset)
    return C.get(cell.preset, dataset=cell.dataset, losses=tuple(cell.losses), labeled=cell.labeled,
                 split_seed=cell.split_seed, unlabeled_fraction=cell.unlabeled_fraction,
                 gt_in_unsup=cell.gt_in_unsup, weights={**base.weights, **cell.weights}, method=cell.method)


def views_per_step(cfg):
    """Crop-views one training step of `cfg` runs through the network (method.train.Trainer's batch)."""
    semi = len(cfg.losses) > 1 and cfg.labeled < 1.0 and cfg.unlabeled_fraction > 0
    crops = cfg.batch_size + (max(1, round(cfg.batch_size * cfg.unlabeled_ratio)) if semi else 0)
    return crops * (2 if losses.NEEDS_SECOND_VIEW & set(cfg.losses) else 1)


def runs_of(cell):
    """{run key: (config, views per step)} of the runs a cell trains: its own, PL's teacher (the supervised twin)
    and the supervised twin of a warm-started run."""
    cfg = C.canonical(cell_config(cell))
    out = {}
    if cfg.method == "pl":                   # the teacher, then a student with the supervised loss and step
        twin = C.supervised_twin(cfg)
        out[C.digest(C.key_fields(twin))] = (twin, views_per_step(twin))
        out[C.digest(C.key_fields(cfg))] = (cfg, views_per_step(replace(cfg, losses=("sup",))))
        return out
    if cfg.init == "supervised" and len(cfg.losses) > 1 and cfg.labeled < 1.0:
        twin = C.supervised_twin(cfg)
        out[C.digest(C.key_fields(twin))] = (twin, views_per_step(twin))
    out[C.digest(C.key_fields(cfg))] = (cfg, views_per_step(cfg))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--s-per-step", type=float, required=True,
                    help="seconds of one supervised training step (batch_size crops, one view) on the GPU")
    ap.add_argument("--s-per-semi-step", type=float, help="seconds of one sup+SC+TE+TI step (default: scaled "
                    "from --s-per-step by its crop-views)")
    ap.add_argument("--steps-share", type=float, default=None, help="also give the hours at this share of max_steps")
    ap.add_argument("--tables", default="1,2,3,4")
    a = ap.parse_args()
    base = C.get(a.preset)
    own = ("sup", "sc", "te", "ti")
    print(f"preset {a.preset}: {base.backbone} at {base.input_size} px, batch {base.batch_size}, max_steps "
          f"{base.max_steps}; assumed seconds per step: supervised {a.s_per_step:g}"
          + (f", sup+SC+TE+TI {a.s_per_semi_step:g}" if a.s_per_semi_step else ", others by crop-views"))

    def seconds(cfg, views):
        if a.s_per_semi_step and tuple(cfg.losses) == own and views > 2 * cfg.batch_size:
            return a.s_per_semi_step
        return a.s_per_step * views / cfg.batch_size

    everything = {}
    for t in a.tables.split(","):
        datasets, seeds = TABLES[t]
        cells = grid.grid(t, a.preset, datasets, seeds, grid.paper.FRACTIONS)
        table = {}
        for c in cells:
            table.update(runs_of(c))
        everything.update(table)
        hours = sum(seconds(cfg, v) * cfg.max_steps for cfg, v in table.values()) / 3600
        steps = sum(cfg.max_steps for cfg, _ in table.values())
        print(f"Table {t} ({', '.join(datasets)}; seeds {','.join(map(str, seeds))}): {len(cells)} cells, "
              f"{len(table)} runs, {steps / 1e6:g} M steps: at most {hours:,.0f} GPU-hours"
              + (f", {a.steps_share * hours:,.0f} at {a.steps_share:g} x max_steps" if a.steps_share else ""))
    hours = sum(seconds(cfg, v) * cfg.max_steps for cfg, v in everything.values()) / 3600
    print(f"Tables {a.tables} together (shared runs once): {len(everything)} runs, at most {hours:,.0f} GPU-hours"
          + (f", {a.steps_share * hours:,.0f} at {a.steps_share:g} x max_steps" if a.steps_share else ""))


if __name__ == "__main__":
    main()
