"""One run from a config, and the run cache: what `python -m kpsemi train`, every notebook, `quickstart` and the
reproduction grid call.

    from kpsemi import config, runs
    m = runs.run(config.get("demo", losses=("sup", "sc", "te", "ti"), labeled=0.05), "runs/ours-5")
    m, folder = runs.cached(config.get("demo", labeled=0.05))     # results/runs/<configuration>/, shared

- **One run**: data + label split (`load_data`) -> the method's trainer -> best checkpoint -> test PCK ->
  metrics.json (`train_and_test`). Data: the embedded set (default), a named real dataset, any COCO keypoints
  files (`DataSpec(train_json=...)`, a label fraction then picks the labeled images of the train JSON, the rest
  become unlabeled, plus an optional folder of unlabeled images), or a DeepLabCut project (+ frames sampled from its
  videos). A run folder records its data in data.json (kpsemi/data/own.py), so what reads the run later finds the
  images again; the label split of own data goes into the run folder ($KPSEMI_DATA/splits/ when that is set),
  never into data/splits/ of the checkout.
- **Methods**: `METHODS` maps `cfg.method` to how a run of it trains: "standard" (the losses of `cfg.losses`),
  "pl" (pseudo-labels: a cached supervised teacher, confident pseudo-labels, a student) and the methods after the
  paper, "mean_teacher", "dual" and "consistency" (their trainers: kpsemi/baselines/, `baselines.TRAINERS`). A new
  method is one function `(cfg, out_dir, spec, resume, device, progress, stop_at) -> metrics` and one entry.
- **The run cache**: `run_dir(cfg, spec)` names a folder under results/runs/ by the hash of the config (+ own data,
  + the embedded set's version); `cached` reuses a finished run there or trains (resuming a killed one). What a
  folder already holds follows one policy (kpsemi/method/train.py's `finished_run`): a finished run of another
  config is an error naming both. One file lock per run folder (`<folder>.lock` beside it) makes jobs that need the
  same run (PL's teacher and the supervised cell of a table, on a cluster) train it one at a time: the later ones
  wait, then find it done.
- **Several processes**: under torchrun every process calls the same functions; rank 0 builds the data caches
  first, holds the lock, tests and writes metrics.json, and every process returns its metrics
  (kpsemi/method/distributed.py).
"""
import os
import time
from dataclasses import replace

import torch

import kpsemi.baselines  # noqa: F401  (registers the baselines' losses: every run can use them)
from kpsemi import config as C
from kpsemi import data
from kpsemi.baselines import TRAINERS, pseudo
from kpsemi.data import crops, splits
from kpsemi.data.crops import KeypointData
from kpsemi.data.own import PATHS, DataSpec, own_records, split_folder, write_spec
from kpsemi.data.sources import coco, dlc
from kpsemi.data.synthetic.writer import SynthConfig
from kpsemi.errors import UserError
from kpsemi.method import distributed, imagenet
from kpsemi.method.device import check_device, default_device
from kpsemi.method.evaluate import evaluate
from kpsemi.method.models import load_model
from kpsemi.method.train import Trainer, finished_run, machine
from kpsemi.paths import results_dir, write_json_atomic


def load_data(cfg, spec=None, progress=True, run_dir=None):
    """(train, val, test) KeypointData and (labeled, unlabeled) index tensors into train. run_dir: the run folder,
    where own data's label split file goes (data.own.split_folder; None and no $KPSEMI_DATA: made in memory)."""
    spec = spec or DataSpec()
    S = cfg.input_size
    extra = None
    if spec.train_json:
        if not (spec.val_json and spec.test_json):
            raise UserError("with --train-json also give --val-json and --test-json")
        parts = [own_records(spec, s) for s in ("train", "val", "test")]
        meta, name = parts[0][0], parts[0][0].name
        for (m, _), p in zip(parts[1:], (spec.val_json, spec.test_json)):
            if m.keypoints != meta.keypoints:
                raise UserError(f"{p}: keypoints {m.keypoints} differ from the train JSON's {meta.keypoints}")
        train, val, test = (crops.materialize_cached(meta, inst, S, progress=progress, desc=f"{name} {s}")
                            for (_, inst), s in zip(parts, ("train", "val", "test")))
        if spec.unlabeled_dir:
            extra = crops.materialize_cached(meta, coco.image_folder(spec.unlabeled_dir, meta), S, progress=progress,
                             desc="unlabeled images")
    elif spec.dlc_project:
        sets = [own_records(spec, s, cfg.data_seed) for s in ("train", "val", "test")]
        meta = sets[0][0]
        train, val, test = (crops.materialize_cached(meta, inst, S, progress=progress, desc=f"{meta.name} {s}")
                            for (_, inst), s in zip(sets, ("train", "val", "test")))
        frames = []
        for v in dlc.project_videos(spec.dlc_project):
            frames += dlc.video_frames(v, meta, spec.video_frames, seed=cfg.data_seed)
        if spec.unlabeled_dir:
            frames += coco.image_folder(spec.unlabeled_dir, meta)
        if frames:
            extra = crops.materialize_cached(meta, frames, S, progress=progress, desc="unlabeled frames")
    else:
        kw = dict(synth_size=cfg.synth_size, seed=cfg.data_seed)
        train, val, test = (data.load(cfg.dataset, s, S, progress=progress, **kw) for s in ("train", "val", "test"))
    if spec.own():                  # own data: one split file per training set, never in the checkout
        folder = split_folder(run_dir)
        sp = splits.get(f"{train.meta.name}-{splits.digest(train.ids)[:8]}", train.ids, write=folder is not None,
                        folder=folder)
    else:
        sp = splits.get(train.meta.name, train.ids)
    labeled = torch.as_tensor(sp.labeled(cfg.labeled, cfg.split_seed))
    unlabeled = torch.as_tensor(sp.unlabeled(cfg.labeled, cfg.split_seed, cfg.unlabeled_fraction))
    if extra is not None:
        n = len(train)
        train = KeypointData.concat([train, extra.unlabel()])
        unlabeled = torch.cat([unlabeled, torch.arange(n, n + len(extra))])
    return train, val, test, labeled, unlabeled


def run(cfg, out_dir, spec=None, resume=False, device=None, progress=True, stop_at=None):
    """Train (or resume, with `resume`) one run of `cfg.method` and write out_dir/metrics.json; returns the metrics
    dict (that of a finished run of this config already in out_dir, reused). Supervised runs are kept under their
    canonical config (config.canonical), so every table row and warm start shares them. out_dir/data.json records
    where the data came from (data.own.write_spec)."""
    distributed.setup()                     # under torchrun: join the process group before the first collective
    cfg = C.canonical(cfg)
    device = check_device(device)
    done = finished_run(out_dir, cfg, resume)
    if done:
        return done
    if cfg.method not in METHODS:
        raise UserError(f"unknown method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    if distributed.context().main:          # one process writes the record of the data
        write_spec(spec, out_dir)
    return METHODS[cfg.method](cfg, out_dir, spec, resume, device, progress, stop_at)


def standard(cfg, out_dir, spec, resume, device, progress, stop_at):
    """The method and the one-stage baselines: train with the losses of `cfg.losses` (warm-started from the
    supervised twin when cfg.init says so)."""
    init = warm_start(cfg, spec, progress)
    with distributed.context().main_first():             # rank 0 builds the data caches the others read
        train, val, test, labeled, unlabeled = load_data(cfg, spec, progress, out_dir)
    return train_and_test(cfg, out_dir, train, val, test, labeled, unlabeled, resume, device, progress, stop_at,
                          init)


def warm_start(cfg, spec=None, progress=True):
    """None, or (run folder, steps, weights) of the supervised twin (config.supervised_twin) that a run with
    `init="supervised"` starts from. Only semi-supervised runs warm-start (unsupervised losses on unlabeled
    images: a label fraction below 1, or own data with unlabeled images, a folder or a DeepLabCut project's video
    frames); the twin is trained first if no notebook or table has trained it yet."""
    own_unlabeled = spec is not None and bool(spec.unlabeled_dir or spec.dlc_project)
    semi = (len(cfg.losses) > 1 or cfg.method != "standard") and (cfg.labeled < 1.0 or own_unlabeled)
    if cfg.init == "scratch" or not semi:
        return None
    if cfg.init != "supervised":
        raise UserError(f"init must be 'scratch' or 'supervised', got {cfg.init!r}")
    m, d = cached(C.supervised_twin(cfg), spec, progress)
    state = torch.load(os.path.join(d, "best.pt"), map_location="cpu", weights_only=True)
    return d, m["steps"], state["model"]


def pseudo_labels(cfg, out_dir, spec, resume, device, progress, stop_at):
    """PL (kpsemi/baselines/pseudo.py): the supervised run of the same split as the teacher (from the run cache),
    confident multi-transform pseudo-labels for the unlabeled images, a student trained on labeled + pseudo-labeled
    images with the supervised loss (from scratch, or from the teacher with init="supervised"); the metrics add the
    pseudo-labels' numbers."""
    if cfg.labeled >= 1.0:
        raise UserError("PL is not defined at 100 % labels: there is no unlabeled data to pseudo-label")
    teacher_cfg = C.supervised_twin(cfg)
    _, tdir = cached(teacher_cfg, spec, progress)
    ctx = distributed.context()
    with ctx.main_first():
        train, val, test, labeled, unlabeled = load_data(cfg, spec, progress, out_dir)
    kp = kept = None
    if ctx.main:                                     # under torchrun: rank 0's pseudo-labels, in every process
        dev = ctx.device(default_device(device))
        teacher, _, _ = load_model(os.path.join(tdir, "best.pt"), dev)
        kp, kept = pseudo.pseudo_labels(teacher, train, unlabeled, train.meta, cfg.pl_threshold, stride=cfg.stride,
                                        device=dev, amp=cfg.amp)
        kp, kept = kp.cpu(), kept.cpu()
    kp, kept = ctx.broadcast((kp, kept))
    student, new_lab = pseudo.student(train, labeled, unlabeled, kp, kept)
    init = warm_start(cfg, spec, progress)             # with init="supervised": the student starts as the teacher
    m = train_and_test(teacher_cfg, out_dir, student, val, test, new_lab, torch.zeros(0, dtype=torch.long), resume,
                       device, progress, stop_at, init)
    if m is None:
        return None                                  # interrupted on purpose (tests)
    m.update(method="pl", config=C.to_dict(cfg), teacher=tdir, n_pseudo_images=int(kept.sum()),
             pseudo_keypoints_kept=int((kp[..., 2] > 0)[kept].sum()),
             pseudo_label_pck=pseudo.label_pck(kp, train, unlabeled), n_labeled=len(labeled))
    if ctx.main:
        write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return m


def after_paper(cfg, out_dir, spec, resume, device, progress, stop_at):
    """mean_teacher, dual, consistency (kpsemi/baselines/): the method's trainer on the same data, labels and
    schedule, warm-started from the supervised twin with init="supervised" (mean_teacher: student and teacher;
    dual: network A, and network B from the supervised run with the same labels and seed run_seed + 1000)."""
    init = warm_start(cfg, spec, progress)
    kw = {}
    if cfg.method == "dual" and init:
        second = warm_start(replace(cfg, seed=C.run_seed(cfg) + 1000), spec, progress)
        kw["init_weights_b"] = second[2]
    train, val, test, labeled, unlabeled = load_data(cfg, spec, progress, out_dir)
    m = train_and_test(cfg, out_dir, train, val, test, labeled, unlabeled, resume, device, progress, stop_at, init,
                       trainer=TRAINERS[cfg.method], **kw)
    if m is not None and kw:
        m["init_from_b"] = second[0]
        write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return m


# cfg.method -> how a run of it trains
METHODS = {"standard": standard, "pl": pseudo_labels, **{name: after_paper for name in TRAINERS}}


def train_and_test(cfg, out_dir, train, val, test, labeled, unlabeled, resume=False, device=None, progress=True,
                   stop_at=None, init=None, trainer=Trainer, **trainer_kw):
    """The Trainer (or `trainer`, given `trainer_kw`) on given data (started from init = warm_start(...) if given),
    then test PCK at the best validation checkpoint -> metrics.json."""
    t0 = time.time()
    tr = trainer(cfg, train, val, labeled, unlabeled, out_dir, device=device, progress=progress,
                 init_weights=init[2] if init else None, **trainer_kw)
    if resume and tr.resume() and progress:
        print(f"resumed {out_dir} at step {tr.step}")
    tr.fit(stop_at=stop_at)
    if stop_at is not None and tr.step >= stop_at and tr.step < tr.max_steps and tr.bad < cfg.patience:
        return None  # interrupted on purpose (tests): no metrics yet
    if not tr.dist.main:
        return tr.dist.broadcast(None)           # under torchrun rank 0 tests and writes; the others get its metrics
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
         "world_size": tr.dist.world_size, "pretrained_loaded": tr.model.kln.pretrained["loaded"],
         "pretrained_sha256": tr.model.kln.pretrained.get("sha256"), "machine": machine(), **tr.run_metrics(),
         "config": C.to_dict(cfg)}
    write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return tr.dist.broadcast(m)


def run_dir(cfg, spec=None):
    """A folder under results/runs/ named by the run's configuration, so notebooks share identical runs."""
    cfg = C.canonical(cfg)
    own = spec is not None and any(getattr(spec, k) is not None for k in PATHS)
    key = {"cfg": C.key_fields(cfg), "spec": vars(spec) if own else None}
    if cfg.dataset == "synthetic" and not own:     # a new version of the embedded set is a new run
        key["synth_version"] = SynthConfig.version
    local = imagenet.local_file() if cfg.pretrained else None
    if local:                                      # ImageNet weights from a file: runs named by its digest
        key["pretrained_sha256"] = local[1]
    name = f"{cfg.dataset}-{'+'.join(cfg.losses)}-{cfg.labeled:g}-s{cfg.split_seed}-{cfg.preset}-{C.digest(key)}"
    return os.path.join(results_dir(), "runs", name)


def cached(cfg, spec=None, progress=False):
    """The run of this configuration in its shared results/runs/ folder: (metrics, run folder); a finished run
    there is read back, a killed one resumes, none trains. The folder's lock (<folder>.lock) is held meanwhile, so
    a job that needs a run another job is training waits for it and then reads it back."""
    d = run_dir(cfg, spec)
    with distributed.setup().main_lock(d + ".lock", waiting=f"waiting for {d}: another process is training it"):
        return run(cfg, d, spec, resume=True, progress=progress), d
