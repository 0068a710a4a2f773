"""One training run from a config: data + label split -> Trainer -> best checkpoint -> test PCK -> metrics.json.

The Python twin of `python -m kpsemi train` (the notebooks and the reproduction script call this):

    from kpsemi import config, experiment
    m = experiment.run(config.get("demo", losses=("sup", "sc", "te", "ti"), labeled=0.05), "runs/ours-5")
    m["test_pck"]

Data: the embedded set (default), a named real dataset, any COCO keypoints files (`DataSpec(train_json=...)`,
a label fraction then picks the labeled images of the train JSON, the rest become unlabeled, plus an optional
folder of unlabeled images), or a DeepLabCut project (+ frames sampled from its videos).
"""
import json
import os
import platform
import time
from dataclasses import dataclass

import torch

from kpsemi import coco, config as C, data as D, datasets, dlc, splits
from kpsemi.evaluate import evaluate
from kpsemi.paths import write_json_atomic
from kpsemi.records import UserError
from kpsemi.train import Trainer


@dataclass
class DataSpec:
    """Where the data comes from; the default is the embedded dataset of the config's synth_size."""
    train_json: str = None
    val_json: str = None
    test_json: str = None
    image_root: str = None
    unlabeled_dir: str = None
    dlc_project: str = None
    video_frames: int = 500


def load_data(cfg, spec=None, progress=True):
    """(train, val, test) KeypointData and (labeled, unlabeled) index tensors into train."""
    spec = spec or DataSpec()
    S = cfg.input_size
    extra = None
    if spec.train_json:
        if not (spec.val_json and spec.test_json):
            raise UserError("with --train-json also give --val-json and --test-json")
        parts = [coco.load_coco(p, image_root=spec.image_root) for p in (spec.train_json, spec.val_json,
                                                                           spec.test_json)]
        meta = parts[0][0]
        for (m, _), p in zip(parts[1:], (spec.val_json, spec.test_json)):
            if m.keypoints != meta.keypoints:
                raise UserError(f"{p}: keypoints {m.keypoints} differ from the train JSON's {meta.keypoints}")
        name = "coco-" + os.path.splitext(os.path.basename(spec.train_json))[0]
        meta.name = name
        train, val, test = (D.cached(meta, inst, S, progress=progress, desc=f"{name} {s}") for (_, inst), s in
                            zip(parts, ("train", "val", "test")))
        if spec.unlabeled_dir:
            extra = D.cached(meta, coco.image_folder(spec.unlabeled_dir, meta), S, progress=progress,
                             desc="unlabeled images")
    elif spec.dlc_project:
        sets = [dlc.load_split(spec.dlc_project, s, seed=cfg.data_seed) for s in ("train", "val", "test")]
        meta = sets[0][0]
        train, val, test = (D.cached(meta, inst, S, progress=progress, desc=f"{meta.name} {s}") for (_, inst), s in
                            zip(sets, ("train", "val", "test")))
        frames = []
        for v in dlc.project_videos(spec.dlc_project):
            frames += dlc.video_frames(v, meta, spec.video_frames, seed=cfg.data_seed)
        if spec.unlabeled_dir:
            frames += coco.image_folder(spec.unlabeled_dir, meta)
        if frames:
            extra = D.cached(meta, frames, S, progress=progress, desc="unlabeled frames")
    else:
        kw = dict(synth_size=cfg.synth_size, seed=cfg.data_seed)
        train, val, test = (datasets.load(cfg.dataset, s, S, progress=progress, **kw) for s in ("train", "val", "test"))
    split_name = train.meta.name
    if spec.train_json or spec.dlc_project:     # own data: one split file per training set, never a name clash
        split_name += "-" + splits.digest(train.ids)[:8]
    sp = splits.get(split_name, train.ids)
    labeled = torch.as_tensor(sp.labeled(cfg.labeled, cfg.split_seed))
    unlabeled = torch.as_tensor(sp.unlabeled(cfg.labeled, cfg.split_seed, cfg.unlabeled_fraction))
    if extra is not None:
        n = len(train)
        train = D.concat([train, extra.unlabel()])
        unlabeled = torch.cat([unlabeled, torch.arange(n, n + len(extra))])
    return train, val, test, labeled, unlabeled


def run(cfg, out_dir, spec=None, resume=False, device=None, progress=True, stop_at=None):
    """Train (or resume) one run and write out_dir/metrics.json; returns the metrics dict."""
    if not resume and os.path.exists(os.path.join(out_dir, "last.pt")):
        raise UserError(f"{out_dir} already holds a run (last.pt); resume it (--resume) or choose another --out")
    if cfg.method == "pl":
        from kpsemi import pseudo
        return pseudo.run(cfg, out_dir, spec, progress)
    if cfg.method != "standard":
        raise UserError(f"unknown method {cfg.method!r}: standard (losses) or pl (pseudo-labels)")
    init = warm_start(cfg, spec, progress)
    train, val, test, labeled, unlabeled = load_data(cfg, spec, progress)
    return train_and_test(cfg, out_dir, train, val, test, labeled, unlabeled, resume, device, progress, stop_at,
                          init)


def warm_start(cfg, spec=None, progress=True):
    """None, or (run folder, steps, weights) of the supervised twin (config.supervised_twin) that a run with
    `init="supervised"` starts from. Only semi-supervised runs warm-start (unsupervised losses on unlabeled
    images); the twin is trained first if no notebook or table has trained it yet."""
    semi = (len(cfg.losses) > 1 or cfg.method != "standard") and cfg.labeled < 1.0
    if cfg.init == "scratch" or not semi:
        return None
    if cfg.init != "supervised":
        raise UserError(f"init must be 'scratch' or 'supervised', got {cfg.init!r}")
    m, d = cached(C.supervised_twin(cfg), spec, progress)
    state = torch.load(os.path.join(d, "best.pt"), map_location="cpu", weights_only=True)
    return d, m["steps"], state["model"]


def train_and_test(cfg, out_dir, train, val, test, labeled, unlabeled, resume=False, device=None, progress=True,
                   stop_at=None, init=None):
    """The Trainer on given data (started from init = warm_start(...) if given), then test PCK at the best
    validation checkpoint -> metrics.json."""
    t0 = time.time()
    tr = Trainer(cfg, train, val, labeled, unlabeled, out_dir, device=device, progress=progress,
                 init_weights=init[2] if init else None)
    if resume and tr.resume() and progress:
        print(f"resumed {out_dir} at step {tr.step}")
    tr.fit(stop_at=stop_at)
    if stop_at is not None and tr.step >= stop_at and tr.step < cfg.max_steps and tr.bad < cfg.patience:
        return None  # interrupted on purpose (tests): no metrics yet
    tr.load_best()
    te = evaluate(tr.model, test, cfg.stride, tr.device, cfg.amp)
    va = evaluate(tr.model, val, cfg.stride, tr.device, cfg.amp)
    m = {"val_pck": va["pck"], "test_pck": te["pck"], "metric": te["metric"],
         "test_per_keypoint": te["per_keypoint"], "test_pixel_error": te["pixel_error"],
         "test_error_percent": te["error_percent"], "test_any_keypoint_pck": te["any_keypoint_pck"],
         "test_twin_separation": te["twin_separation"], "test_twin_separation_true": te["twin_separation_true"],
         "steps": tr.step, "best_step": tr.best_step, "seconds": round(tr.seconds, 1),
         "train_seconds_per_step": round(tr.seconds / max(1, tr.step), 4),
         "data_wait_share": round(tr.data_seconds / max(1e-9, tr.seconds), 4),
         "wall_seconds": round(time.time() - t0, 1), "dataset": train.meta.name, "losses": list(cfg.losses),
         "method": cfg.method, "labeled": cfg.labeled, "split_seed": cfg.split_seed, "n_labeled": len(labeled),
         "n_unlabeled": len(unlabeled) if tr.semi else 0, "device": tr.device,
         "init_from": init[0] if init else None, "init_steps": init[1] if init else 0,
         "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
         "config": C.to_dict(cfg)}
    write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return m


def run_or_load(cfg, out_dir, spec=None, progress=True):
    """The metrics of `out_dir` if it holds a finished run of this very config, else train (resuming a partial
    run). A finished run of another config is an error, never silently reused or overwritten."""
    cfg = C.canonical(cfg)
    path = os.path.join(out_dir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            m = json.load(f)
        want = json.loads(json.dumps(C.to_dict(cfg)))
        have = {**json.loads(json.dumps(C.to_dict(C.Config()))), **m.get("config", {})}   # older runs lack new fields
        if have != want:
            diff = sorted(k for k in set(want) | set(have) if have.get(k) != want.get(k))
            raise UserError(f"{out_dir} holds a finished run with another config (differs in {', '.join(diff)}); "
                            "delete it or choose another folder")
        return m
    return run(cfg, out_dir, spec, resume=True, progress=progress)


def run_dir(cfg, spec=None):
    """A folder under results/runs/ named by the run's configuration, so notebooks share identical runs."""
    import hashlib
    from kpsemi.paths import results_dir
    cfg = C.canonical(cfg)
    own = spec is not None and any(v is not None for k, v in vars(spec).items() if k != "video_frames")
    key = {"cfg": C.key_fields(cfg), "spec": vars(spec) if own else None}
    if cfg.dataset == "synthetic" and not own:     # a new version of the embedded set is a new run
        from kpsemi.synth import SynthConfig
        key["synth_version"] = SynthConfig.version
    key = json.dumps(key, sort_keys=True)
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    name = f"{cfg.dataset}-{'+'.join(cfg.losses)}-{cfg.labeled:g}-s{cfg.split_seed}-{cfg.preset}-{h}"
    return os.path.join(results_dir(), "runs", name)


def cached(cfg, spec=None, progress=False):
    """`run_or_load` in the shared results/runs/ folder of this configuration: (metrics, run folder)."""
    d = run_dir(cfg, spec)
    return run_or_load(cfg, d, spec, progress), d
