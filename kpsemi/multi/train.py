"""SemiMultiPose training: config + presets, the schedule, the trainer on the kit's training loop
(kpsemi/method/train.py: checkpoint/resume, history, the finite-loss check), runs (the seed's table is built from
them in table.py).

Schedule (seed 002, honeybee): every method trains with L_supervised = L_a + L_b + L_d on labeled frames; the
fusion loss on labeled frames (alpha L_fl) switches on at step `fl_start`, the one on unlabeled frames
(beta L_fu) at `fu_start`; the learning rate drops by `lr_drop` at `lr_drop_at`. The three rows of the table:

    supervised   DirectPose-like, fusion off             labeled   + alpha L_fl ("SemiMultiPose-labeled")
    semi         + alpha L_fl + beta L_fu (SemiMultiPose)

The three are identical up to `fl_start` (and labeled = semi up to `fu_start`): same seed, same batches, and the
unlabeled sampler has its own generator that is untouched before `fu_start`. `run_methods` therefore trains the
supervised run and branches the others from its checkpoints at the switch steps (`phase-<step>.pt`) — the same
result as three runs from scratch, for less compute. Test OKS AP is measured every `eval_every` steps
(history.jsonl: the seed's Fig. 3 curves); the reported number is the AP of the final model.

    m = train.run(train.get("demo", method="semi"), "runs/smp")          # from kpsemi.multi import train
"""
import os
import time
from dataclasses import dataclass, replace

import torch

from kpsemi import config as C
from kpsemi.errors import UserError
from kpsemi.method import losses
from kpsemi.method.device import autocast
from kpsemi.method.train import TrainLoop, cat_batches, finished_run, hide_labels, machine
from kpsemi.multi import data as multi_data, eval as multi_eval, losses as multi_losses
from kpsemi.multi.model import MultiPoseNet
from kpsemi.paths import write_json_atomic

METHODS = multi_eval.NAMES          # method -> the row name in the seed's table


@dataclass
class MultiConfig:
    preset: str = "demo"
    method: str = "semi"             # supervised | labeled | semi
    # data
    dataset: str = "synthetic"       # synthetic | honeybee | coco
    synth_size: str = "smoke"        # embedded multi-animal scenes: smoke (128 px) | default | <n train frames>
    animals: tuple = (2, 4)
    drop: float = 0.15               # synthetic partial labels: share of annotations removed
    labeled: float = 0.1             # synthetic: labeled share of the training frames
    data_seed: int = 0
    split_seed: int = 0
    root: str = None                 # honeybee folder (train.json, test.json, images/, unlabeled/)
    train_set: str = "train25"       # honeybee: train135 | train25 | train5
    subset_seed: int = 0             # which of the five Train25 / Train5 subsets
    train_json: str = None           # dataset "coco": any multi-instance COCO keypoints files
    test_json: str = None
    unlabeled_dir: str = None
    scale: float = 1.0               # working resolution = scale x the original frame
    crop: int = None                 # training crop side (working pixels); None: whole frames
    # model
    backbone: str = "hrnet_tiny"
    pretrained: bool = False
    width: int = 32
    head_convs: int = 2
    # targets, losses, inference
    window: int = 1                  # B1 target: (2 window + 1)^2 cells
    margin: float = 0.5              # box = keypoint extent + margin cells
    offset_scale: float = 4.0        # B3 predicts offsets / offset_scale (cells)
    gamma: float = 2.0
    kappa: float = 0.25
    delta: float = 0.05
    alpha: float = 0.01
    beta: float = 0.1
    fl_start: int = 2000
    fu_start: int = 5000
    nms_sigma: float = 0.25          # pose NMS: proposals with OKS > nms_oks at this sigma are one animal
    nms_oks: float = 0.5
    max_dets: int = 100
    oks_sigma: float = None          # None: the dataset's (0.5: the seed's sigma^2 = 1)
    # augmentation
    rotation: float = 180.0
    scale_aug: tuple = (0.8, 1.2)
    flip: float = 0.5
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_drop_at: int = None
    lr_drop: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 3              # labeled frames per step
    unlabeled_batch: int = 3         # unlabeled frames per step once L_fu is on
    max_steps: int = 15000
    eval_every: int = 1000
    amp: bool = True
    seed: int = 0
    num_threads: int = 0


PRESETS = {
    "smoke": dict(synth_size="smoke", backbone="hrnet_tiny", width=16, head_convs=1, batch_size=2,
                  unlabeled_batch=2, max_steps=12, fl_start=4, fu_start=8, eval_every=6, lr=2e-3),
    "demo": dict(synth_size="smoke", backbone="hrnet_tiny", width=32, batch_size=3, unlabeled_batch=3,
                 max_steps=400, fl_start=100, fu_start=200, eval_every=100, lr=2e-3, lr_drop_at=300),
    "paper": dict(synth_size="default", animals=(2, 5), backbone="resnet50", pretrained=True, width=256,
                  head_convs=4, batch_size=3, unlabeled_batch=3, max_steps=15000, fl_start=2000, fu_start=5000,
                  eval_every=1000, optimizer="sgd", lr=0.01, lr_drop_at=5000, lr_drop=0.01),
}
DATA_PRESETS = {  # per dataset on top of the preset: the honeybee frames are 1280 x 720
    "honeybee": {"smoke": dict(scale=0.125, crop=96),
                 "demo": dict(scale=0.25, crop=160, batch_size=4, unlabeled_batch=4, max_steps=3000, fl_start=400,
                              fu_start=1000, lr_drop_at=1000),        # the seed's 2k / 5k / 15k schedule, / 5
                 "paper": dict(scale=1.0, crop=None, offset_scale=16.0)},     # offsets scale with the frames
}


def get(preset=None, dataset="synthetic", **overrides):
    """MultiConfig of a preset (default $KPSEMI_PRESET or demo) for a dataset, with overrides (None ignored)."""
    preset = preset or C.preset_name()
    cfg = C.from_presets(MultiConfig, PRESETS, preset, {"dataset": dataset},
                         DATA_PRESETS.get(dataset, {}).get(preset, {}), **overrides)
    if cfg.method not in METHODS:
        raise UserError(f"unknown method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    return cfg


def load_data(cfg, progress=True):
    """(train, test, labeled idx, unlabeled idx) of the config's dataset."""
    if cfg.dataset == "synthetic":
        return multi_data.synthetic(cfg.synth_size, cfg.labeled, cfg.split_seed, cfg.animals, cfg.drop,
                                    cfg.data_seed, cfg.scale, progress)
    if cfg.dataset == "honeybee":
        return multi_data.honeybee(cfg.root, cfg.train_set, cfg.subset_seed, cfg.scale, progress)
    if cfg.dataset == "coco":
        if not (cfg.train_json and cfg.test_json):
            raise UserError("dataset 'coco' needs train_json and test_json")
        meta, tr = multi_data.coco_frames(cfg.train_json)
        _, te = multi_data.coco_frames(cfg.test_json)
        unl = multi_data.folder_frames(cfg.unlabeled_dir, meta) if cfg.unlabeled_dir else []
        train = multi_data.materialize_cached(meta, tr + unl, cfg.scale, progress)
        return train, multi_data.materialize_cached(meta, te, cfg.scale, progress), torch.arange(len(tr)), \
            torch.arange(len(tr), len(tr) + len(unl))
    raise UserError(f"unknown dataset {cfg.dataset!r}: use synthetic, honeybee or coco")


class MultiTrainer(TrainLoop):
    """SemiMultiPose's trainer on the shared loop (kpsemi/method/train.py): no early stopping, the lr schedule and
    the fusion switches of the seed, test OKS AP in the history, and phase checkpoints at the switch steps."""
    RECORD = {"test_ap": "ap", "test_ap50": "ap50"}

    def __init__(self, cfg, train, test, labeled, unlabeled, out_dir, device=None, progress=True):
        super().__init__(cfg, out_dir, device, progress)
        self.train, self.test, self.desc = train, test, f"train {cfg.method}"
        self.model = MultiPoseNet(train.meta.num_keypoints, cfg.backbone, cfg.pretrained, cfg.width,
                                  cfg.head_convs).to(self.device)
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                       weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        g_data = self.generator("data", 0)
        g_unl = self.generator("unl", 2)                 # untouched before fu_start (branching)
        self.g_aug = self.generator("aug", 1, self.device)
        self.lab = self.sampler("lab", labeled, g_data)
        self.unl = self.sampler("unl", unlabeled if len(unlabeled) else None, g_unl)
        self.n_labeled, self.n_unlabeled = len(labeled), len(unlabeled)
        self.perm = train.meta.flip_permutation()
        self.registry = multi_losses.registry(cfg)

    def weights(self, step):
        c = self.cfg
        fl = c.method in ("labeled", "semi") and step >= c.fl_start
        fu = c.method == "semi" and step >= c.fu_start and self.unl is not None
        return {"kp": 1.0, "box": 1.0, "off": 1.0, "fl": c.alpha if fl else 0.0, "fu": c.beta if fu else 0.0}

    def schedule(self):
        cfg = self.cfg
        for grp in self.opt.param_groups:
            grp["lr"] = cfg.lr * (cfg.lr_drop if cfg.lr_drop_at is not None and self.step >= cfg.lr_drop_at else 1)

    def next_batch(self):
        b = self.train.batch(self.lab.next(self.cfg.batch_size), self.device)
        if self.weights(self.step)["fu"] > 0:
            b = cat_batches(b, hide_labels(self.train.batch(self.unl.next(self.cfg.unlabeled_batch), self.device)))
        return b

    def losses(self, b):
        cfg, w = self.cfg, self.weights(self.step)
        x, kp = multi_data.augment(b, cfg.crop, self.g_aug, cfg.rotation, cfg.scale_aug, cfg.flip, self.perm)
        with autocast(self.device, cfg.amp):                            # bf16 on CUDA, a no-op on CPU
            out = {k: v.float() for k, v in self.model(x).items()}       # losses in float32
        hw = out["kp"].shape[-2:]
        G, U, P, Pm = multi_losses.targets(kp, hw, self.model.stride, cfg.window, cfg.margin,
                                           self.train.meta.skeleton, cfg.offset_scale)
        out.update(G=G, U=U, P=P, Pm=Pm, labeled=b["labeled"])
        return losses.total(out, [n for n, wt in w.items() if wt > 0], w, self.registry)

    def evaluate(self):
        return multi_eval.evaluate(self.model, self.test, self.cfg, self.device)

    def on_fit_start(self):
        if self.step in (self.cfg.fl_start, self.cfg.fu_start) and not os.path.exists(
                os.path.join(self.out, f"phase-{self.step}.pt")):
            self.save(f"phase-{self.step}.pt")            # branched at a switch step that is also ours

    def on_step_end(self):
        if self.step in (self.cfg.fl_start, self.cfg.fu_start):
            self.seconds = self.elapsed()
            self.save(f"phase-{self.step}.pt")


def run(cfg, out_dir, resume=False, init_from=None, device=None, progress=True, stop_at=None, data=None):
    """Train one method (or resume / branch from `init_from`, a phase checkpoint of a run that shares this run's
    schedule up to its step) and write out_dir/metrics.json; returns the metrics dict. What out_dir already holds
    follows the policy of every run (method/train.py's `finished_run`)."""
    t0 = time.time()
    done = finished_run(out_dir, cfg, resume)
    if done:
        return done
    train, test, lab, unl = data or load_data(cfg, progress)
    tr = MultiTrainer(cfg, train, test, lab, unl, out_dir, device, progress)
    if not (resume and tr.resume()) and init_from and os.path.exists(init_from):
        tr.resume(init_from, but=("method",))          # the parent's schedule up to the switch step
    tr.fit(stop_at)
    if tr.step < cfg.max_steps:
        return None                                     # interrupted on purpose (tests)
    last = tr.history[-1] if tr.history and tr.history[-1]["step"] == tr.step else None
    ev = tr.evaluate() if last is None else None
    H, W = train.images.shape[-2:]
    m = {"test_ap": last["test_ap"] if last else ev["ap"], "test_ap50": last["test_ap50"] if last else ev["ap50"],
         "method": cfg.method, "row": METHODS[cfg.method], "dataset": cfg.dataset, "train_set": cfg.train_set
         if cfg.dataset == "honeybee" else None, "subset_seed": cfg.subset_seed, "steps": tr.step,
         "seconds": round(tr.seconds, 1), "wall_seconds": round(time.time() - t0, 1), "n_labeled": tr.n_labeled,
         "n_unlabeled": tr.n_unlabeled, "working_size": [W, H], "scale": cfg.scale, "device": tr.device,
         "world_size": tr.dist.world_size, "machine": machine(), "history": tr.history, "config": C.to_dict(cfg)}
    write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return m


def run_methods(cfg, out_dir, methods=tuple(METHODS), progress=True, resume=False):
    """{method: metrics} of the table's rows for one config, sharing the common prefix of the schedule: a parent
    that is not asked for is trained only up to the step its child branches off."""
    if not 0 <= cfg.fl_start <= cfg.fu_start <= cfg.max_steps:
        raise UserError("the schedule needs 0 <= fl_start <= fu_start <= max_steps")
    data = load_data(cfg, progress)
    stop = {m: cfg.max_steps for m in methods}
    if "semi" in stop:
        stop.setdefault("labeled", cfg.fu_start)
    if "labeled" in stop:
        stop.setdefault("supervised", cfg.fl_start)
    parent = {"labeled": ("supervised", cfg.fl_start), "semi": ("labeled", cfg.fu_start)}
    res = {}
    for m in ("supervised", "labeled", "semi"):
        if m not in stop:
            continue
        src, step = parent.get(m, (None, 0))
        init = os.path.join(out_dir, src, f"phase-{step}.pt") if src and step > 0 else None
        res[m] = run(replace(cfg, method=m), os.path.join(out_dir, m), resume=resume, init_from=init,
                     progress=progress, data=data, stop_at=None if stop[m] == cfg.max_steps else stop[m])
    return {m: res[m] for m in methods}
