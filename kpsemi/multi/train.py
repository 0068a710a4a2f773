"""SemiMultiPose training: config + presets, the schedule, the trainer (checkpoint/resume), runs (the seed's table
is built from them in multi_table.py).

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

    m = multi_train.run(multi_train.get("demo", method="semi"), "runs/smp")
"""
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace

import torch
from tqdm.auto import tqdm

from kpsemi import config as C
from kpsemi.multi import data as multi_data, eval as multi_eval, losses as multi_losses
from kpsemi.method.evaluate import autocast
from kpsemi.multi.model import MultiPoseNet
from kpsemi.paths import save_atomic, write_json_atomic
from kpsemi.errors import UserError
from kpsemi.method.train import Sampler
from kpsemi.errors import TrainingError

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
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = replace(MultiConfig(preset=preset, dataset=dataset),
                  **{**PRESETS[preset], **DATA_PRESETS.get(dataset, {}).get(preset, {})})
    unknown = set(overrides) - set(asdict(cfg))
    if unknown:
        raise UserError(f"unknown config fields: {sorted(unknown)}")
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
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
        train = multi_data.cached(meta, tr + unl, cfg.scale, progress)
        return train, multi_data.cached(meta, te, cfg.scale, progress), torch.arange(len(tr)), \
            torch.arange(len(tr), len(tr) + len(unl))
    raise UserError(f"unknown dataset {cfg.dataset!r}: use synthetic, honeybee or coco")


class MultiTrainer:
    def __init__(self, cfg, train, test, labeled, unlabeled, out_dir, device=None, progress=True):
        self.cfg, self.train, self.test, self.out = cfg, train, test, out_dir
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        torch.manual_seed(cfg.seed)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.model = MultiPoseNet(train.meta.num_keypoints, cfg.backbone, cfg.pretrained, cfg.width,
                                  cfg.head_convs).to(self.device)
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                       weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.g_data = torch.Generator().manual_seed(cfg.seed)
        self.g_unl = torch.Generator().manual_seed(cfg.seed + 2)     # untouched before fu_start (branching)
        self.g_aug = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.lab = Sampler(labeled, self.g_data)
        self.unl = Sampler(unlabeled, self.g_unl) if len(unlabeled) else None
        self.n_labeled, self.n_unlabeled = len(labeled), len(unlabeled)
        self.perm = train.meta.flip_permutation()
        self.step, self.history, self.seconds = 0, [], 0.0
        os.makedirs(out_dir, exist_ok=True)

    def weights(self, step):
        c = self.cfg
        fl = c.method in ("labeled", "semi") and step >= c.fl_start
        fu = c.method == "semi" and step >= c.fu_start and self.unl is not None
        return {"kp": 1.0, "box": 1.0, "off": 1.0, "fl": c.alpha if fl else 0.0, "fu": c.beta if fu else 0.0}

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "g_data": self.g_data.get_state(),
                "g_unl": self.g_unl.get_state(), "g_aug": self.g_aug.get_state(), "lab": self.lab.state_dict(),
                "unl": self.unl.state_dict() if self.unl else None, "step": self.step, "history": self.history,
                "seconds": self.seconds, "config": C.to_dict(self.cfg)}

    def save(self, name):
        save_atomic(self.state_dict(), os.path.join(self.out, name))

    def resume(self, path=None):
        """Continue from `path` (default out_dir/last.pt; or another run's phase checkpoint to branch from)."""
        path = path or os.path.join(self.out, "last.pt")
        if not os.path.exists(path):
            return False
        s = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        for k in ("g_data", "g_unl", "g_aug"):
            getattr(self, k).set_state(s[k].cpu() if k != "g_aug" or self.device == "cpu" else s[k])
        self.lab.load_state_dict(s["lab"])
        if self.unl and s["unl"]:
            self.unl.load_state_dict(s["unl"])
        self.step, self.history, self.seconds = s["step"], s["history"], s["seconds"]
        return True

    def train_step(self):
        cfg, w = self.cfg, self.weights(self.step)
        for grp in self.opt.param_groups:
            grp["lr"] = cfg.lr * (cfg.lr_drop if cfg.lr_drop_at is not None and self.step >= cfg.lr_drop_at else 1)
        b = self.train.batch(self.lab.next(cfg.batch_size), self.device)
        if w["fu"] > 0:
            u = self.train.batch(self.unl.next(cfg.unlabeled_batch), self.device)
            u["keypoints"], u["labeled"] = torch.zeros_like(u["keypoints"]), torch.zeros_like(u["labeled"])
            b = {k: torch.cat([b[k], u[k]]) for k in b}
        x, kp = multi_data.augment(b, cfg.crop, self.g_aug, cfg.rotation, cfg.scale_aug, cfg.flip, self.perm)
        with autocast(self.device, cfg.amp):                            # bf16 on CUDA, a no-op on CPU
            out = {k: v.float() for k, v in self.model(x).items()}       # losses in float32
        hw = out["kp"].shape[-2:]
        G, U, P, Pm = multi_losses.targets(kp, hw, self.model.stride, cfg.window, cfg.margin,
                                           self.train.meta.skeleton, cfg.offset_scale)
        out.update(G=G, U=U, P=P, Pm=Pm, labeled=b["labeled"])
        loss, parts = multi_losses.total(out, cfg, w)
        for n, v in parts.items():
            if not torch.isfinite(v):
                raise TrainingError(f"loss '{n}' became {float(v.detach())} at step {self.step + 1}; stopping "
                                    "(lower the learning rate or the weight of that loss)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {n: float(v.detach()) for n, v in parts.items()}

    def evaluate(self):
        return multi_eval.evaluate(self.model, self.test, self.cfg, self.device)

    def fit(self, stop_at=None):
        cfg = self.cfg
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"train {cfg.method}", disable=not self.progress,
                   leave=False)
        running, t_start, n = {}, time.time() - self.seconds, 0
        phases = (cfg.fl_start, cfg.fu_start)
        if self.step in phases and not os.path.exists(os.path.join(self.out, f"phase-{self.step}.pt")):
            self.save(f"phase-{self.step}.pt")                  # branched at a switch step that is also ours
        while self.step < cfg.max_steps and (stop_at is None or self.step < stop_at):
            for k, v in self.train_step().items():
                running[k] = running.get(k, 0.0) + v
            n += 1
            bar.update(1)
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                ev = self.evaluate()
                self.seconds = time.time() - t_start
                self.history.append({"step": self.step, "test_ap": ev["ap"], "test_ap50": ev["ap50"],
                                     "seconds": round(self.seconds, 2),
                                     **{f"loss_{k}": v / n for k, v in running.items()}})
                running, n = {}, 0
                with open(os.path.join(self.out, "history.jsonl"), "w") as f:
                    f.write("".join(json.dumps(h) + "\n" for h in self.history))
                bar.set_postfix(test_ap=f"{ev['ap']:.3f}")
                self.save("last.pt")
            if self.step in phases:
                self.seconds = time.time() - t_start
                self.save(f"phase-{self.step}.pt")
        bar.close()
        self.seconds = time.time() - t_start
        return self


def run(cfg, out_dir, resume=False, init_from=None, device=None, progress=True, stop_at=None, data=None):
    """Train one method (or resume / branch from `init_from`, a phase checkpoint of a run that shares this run's
    schedule up to its step) and write out_dir/metrics.json; returns the metrics dict."""
    t0 = time.time()
    done = os.path.join(out_dir, "metrics.json")
    if resume and os.path.exists(done):                 # finished before with this very config: keep it
        with open(done) as f:
            m = json.load(f)
        if m.get("config") == C.to_dict(cfg):
            return m
    train, test, lab, unl = data or load_data(cfg, progress)
    tr = MultiTrainer(cfg, train, test, lab, unl, out_dir, device, progress)
    last = os.path.join(out_dir, "last.pt")
    if not (resume and _same_run(last, cfg) and tr.resume(last)) and init_from and os.path.exists(init_from):
        if not _same_run(init_from, cfg, but="method"):
            raise UserError(f"{init_from}: a checkpoint of another configuration; cannot branch from it")
        tr.resume(init_from)
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
         "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
         "history": tr.history, "config": C.to_dict(cfg)}
    write_json_atomic(m, os.path.join(out_dir, "metrics.json"), indent=1)
    return m


def _same_run(path, cfg, but=None):
    """Whether the checkpoint at `path` exists and was written with `cfg` (ignoring the field `but`)."""
    if not os.path.exists(path):
        return False
    saved = dict(torch.load(path, map_location="cpu", weights_only=True)["config"])
    want = C.to_dict(cfg)
    if but:
        saved.pop(but, None), want.pop(but, None)
    return saved == want


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
