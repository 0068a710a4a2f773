"""The embeddings of any run the kit trained — the embedded set, a named dataset, own COCO or DeepLabCut data — for
the explorer and for other tools.

    paths = model_paths(["runs/sup-5", "runs/ours-5"])      # {name: best.pt}, named by their folders
    test = run_data("runs/ours-5", "test")                 # the test crops the run was evaluated on, loaded again
    export(["runs/ours-5"], None, "z.csv")                 # z_i with image ids and keypoint names (.csv or .npz)
    python -m kpsemi embeddings --run runs/ours-5 --out z.npz

A run folder names its data twice: the config in best.pt (dataset, sizes, seeds) and, for own data, data.json
(kpsemi/data/own.py: the COCO files or the DeepLabCut project). `explorer.explore` opens the explorer on runs the
same way.
"""
import csv
import os

import numpy as np
import torch

from kpsemi import data as datasets
from kpsemi.data import crops
from kpsemi.data.own import own_records, read_spec
from kpsemi.embeddings.analysis import concat, extract
from kpsemi.errors import UserError
from kpsemi.method import models


def model_paths(runs):
    """{name: best.pt path} from a dict name -> (best.pt | run folder), a list of run folders, or one path. A list
    names each run by its folder; where two folders share a name, by the paths as given."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not isinstance(runs, dict):
        runs = [str(p) for p in runs]
        names = [os.path.basename(os.path.normpath(p)) or p for p in runs]
        runs = dict(zip(names if len(set(names)) == len(names) else runs, runs))
    if not runs:
        raise UserError("the explorer needs at least one model (a best.pt file or a run folder)")
    out = {}
    for name, p in runs.items():
        path = os.path.join(p, "best.pt") if os.path.isdir(p) else str(p)
        if not os.path.isfile(path):
            raise UserError(f"model {name!r}: no checkpoint at {path} (give a best.pt or a run folder holding one)")
        out[str(name)] = path
    return out


def load_for(name, path, data, device="cpu"):
    """(model, config dict) of the checkpoint `path` (weights_only), checked against KeypointData `data`."""
    m, cfg, meta = models.load_model(path, device)
    if list(meta["keypoints"]) != list(data.meta.keypoints):
        raise UserError(f"model {name!r} was trained on keypoints {meta['keypoints']}, the data has "
                        f"{data.meta.keypoints}")
    if cfg["input_size"] != data.size:
        raise UserError(f"model {name!r} was trained on {cfg['input_size']} px crops but the data has "
                        f"{data.size} px: load the data with input_size={cfg['input_size']}")
    return m, cfg


def run_data(run, split="test", progress=False):
    """The `split` crops of the data a run trained on, loaded again at its input size: the config and meta in its
    best.pt, the files in its data.json (own COCO or DeepLabCut data). `run`: a run folder or its best.pt."""
    path = os.path.join(run, "best.pt") if os.path.isdir(run) else str(run)
    if not os.path.isfile(path):
        raise UserError(f"{run}: no best.pt (give a run folder of `python -m kpsemi train` or its best.pt)")
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
        cfg, meta = s["config"], s["meta"]
    except Exception as e:  # truncated file, another program's checkpoint
        raise UserError(f"{path}: cannot read this checkpoint ({type(e).__name__})") from None
    size = cfg["input_size"]
    spec = read_spec(os.path.dirname(path))
    if spec is not None and spec.own():
        m, inst = own_records(spec, split, cfg["data_seed"])
        d = crops.materialize_cached(m, inst, size, progress=progress, desc=f"{m.name} {split}")
    else:
        synth = f"synthetic-{cfg['synth_size']}-s{cfg['data_seed']}"
        if cfg["dataset"] == "synthetic" and meta["name"] != synth:
            raise UserError(f"{run}: trained on {meta['name']!r}, and its folder has no data.json naming those files; "
                            f"pass the data: data=kpsemi.data.load('coco', '{split}', {size}, json=...) in Python, "
                            "--json FILE on the command line")
        d = datasets.load(cfg["dataset"], split, size, progress=progress, synth_size=cfg["synth_size"],
                          seed=cfg["data_seed"])
    if list(d.meta.keypoints) != list(meta["keypoints"]):
        raise UserError(f"{run}: trained on keypoints {meta['keypoints']}, but its data now has "
                        f"{d.meta.keypoints}; pass the data it was trained on")
    return d


def runs_and_data(runs, data=None, split="test"):
    """({name: best.pt}, KeypointData): `data`, or (None) the `split` of the data the first run trained on."""
    paths = model_paths(runs)
    return paths, data if data is not None else run_data(next(iter(paths.values())), split)


def export(runs, data, path, split="test", source="predicted", device="cpu", progress=False):
    """Write each run's embeddings of `data` (None: the `split` of the first run's data) to `path`; returns the number
    of rows.

    .csv: one row per run and visible keypoint: run, image (index into the data), image_id, keypoint (index),
    keypoint_name, class, x, y (crop pixels), z0 .. z{C-1}. .npz: the same columns as arrays (run, image, image_id,
    keypoint, keypoint_name, class, xy (P, 2), z (P, C)) plus keypoint_names (K,) and source."""
    ext = str(path).lower().rsplit(".", 1)[-1]
    if ext not in ("csv", "npz"):
        raise UserError(f"{path}: the export is written as .csv or .npz; name the file so")
    paths, data = runs_and_data(runs, data, split)
    embs = {}
    for name, ckpt in paths.items():
        model, cfg = load_for(name, ckpt, data, device)
        embs[name] = extract(model, data, source, cfg["stride"], cfg["sigma"], device=device, progress=progress)
    dims = {name: e.z.shape[1] for name, e in embs.items()}
    if len(set(dims.values())) > 1:
        raise UserError(f"the runs' embeddings differ in size ({dims}): export them one at a time")
    e = concat(list(embs.values()))
    classes = list(data.meta.classes)
    cols = {"run": np.concatenate([[name] * len(x) for name, x in embs.items()]), "image": e.image,
            "image_id": np.array([str(data.ids[i]) for i in e.image]), "keypoint": e.kind,
            "keypoint_name": np.array([e.names[k] for k in e.kind]),
            "class": np.array([classes[c] if 0 <= c < len(classes) else "" for c in e.cls])}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ext == "npz":
        np.savez(path, **cols, xy=e.xy, z=e.z, keypoint_names=np.array(e.names), source=np.array(source))
    else:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(cols) + ["x", "y"] + [f"z{j}" for j in range(e.z.shape[1])])
            for r in range(len(e)):
                w.writerow([cols[c][r] for c in cols] + [f"{v:.7g}" for v in e.xy[r]] + [f"{v:.7g}" for v in e.z[r]])
    return len(e)
