"""Training: the loop every trainer of the kit shares, and the method's trainer on it.

`TrainLoop` (as minGPT's generic Trainer serves its projects) is the same for the single-animal `Trainer` here and
kpsemi/multi/train.py's `MultiTrainer`: seeding from `config.run_seed`, endless seeded samplers with their state,
one optimiser step with a finite-loss check that names the loss, evaluation every `eval_every` steps with the best
weights kept (best.pt), lr drops on a validation plateau and early stopping, history.jsonl (rewritten from the
history at every evaluation and on resume, so a resumed run's file equals an uninterrupted one), last.pt with
everything needed to resume exactly (model, optimizer, RNG states, sampler positions, counters, running loss sums,
history), and a tqdm bar. A trainer brings its model, optimizer, samplers, `next_batch`, `losses(batch)` and
`evaluate`. Under torchrun (kpsemi/method/distributed.py) the loop averages the logged losses over the processes,
and rank 0 evaluates, checkpoints (with every process's generator states) and broadcasts its decisions; a trainer
that supports it (`DISTRIBUTED`; the method's Trainer) shards its batches and runs its step as one DDP forward. A
trainer may add `after_optimizer_step` (e.g. an EMA teacher's update), `extra_state` / `load_extra_state` (more to
keep in last.pt, e.g. that teacher) and TRACK (quantities of `losses`' dict that are not losses, e.g. heatmap
energies, recorded in the history under their own names).

The method's step (`Trainer`): draw labeled and unlabeled indices (batch_size labeled crops, + batch_size x
unlabeled_ratio unlabeled ones in a semi-supervised run) -> batch dict -> standard augmentation (rotation, scale,
flip) -> if a loss needs it, a second view x' = g(x, s) by a random perspective warp -> the model on both views at
once -> outputs dict (heatmaps, targets, z, KCN logits, ...) -> losses.total -> Adam. After `patience` evaluations
without improvement of validation PCK (or, the first time, at `lr_drop_at` x max_steps if that comes first), lower
the learning rate (`lr_drops` times, by `lr_drop_factor`), then stop; or stop at `max_steps` (a semi-supervised
run: `semi_max_steps` when set, e.g. mean_teacher at the demo preset, config.METHOD_PRESETS).
"""
import json
import math
import os
import platform
import time

import torch
from tqdm.auto import tqdm

from kpsemi import config as C
from kpsemi.data import geometry
from kpsemi.errors import TrainingError, UserError
from kpsemi.method import distributed, heatmaps, losses, models, warp
from kpsemi.method.device import autocast, default_device
from kpsemi.method.evaluate import evaluate
from kpsemi.paths import save_atomic, write_text_atomic


class Sampler:
    """Endless shuffled passes over an index set; its state (permutation, position) is part of a checkpoint."""

    def __init__(self, idx, generator):
        self.idx, self.g = torch.as_tensor(idx, dtype=torch.long), generator
        self.perm, self.pos = self.idx[torch.randperm(len(self.idx), generator=self.g)], 0

    def next(self, n):
        out = []
        while n > 0:
            if self.pos >= len(self.perm):
                self.perm, self.pos = self.idx[torch.randperm(len(self.idx), generator=self.g)], 0
            take = self.perm[self.pos:self.pos + n]
            out.append(take)
            self.pos += len(take)
            n -= len(take)
        return torch.cat(out)

    def state_dict(self):
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, s):
        self.perm, self.pos = s["perm"].cpu(), s["pos"]


def finished_run(out_dir, cfg, resume=False):
    """What a run folder already holds, by one policy for every run of the kit (single- and multi-animal): the
    metrics dict of a finished run (metrics.json) of this very config, reused; None when there is nothing to reuse
    and the run should train, resuming an unfinished one (last.pt) only when `resume` is asked. A finished run of
    another config is an error naming both configs (config.check_same); so is an unfinished run without `resume`."""
    path = os.path.join(out_dir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            m = json.load(f)
        saved = {**C.to_dict(type(cfg)()), **m.get("config", {})}   # a field added later reads as its default
        C.check_same(saved, C.to_dict(cfg), out_dir)
        return m
    if not resume and os.path.exists(os.path.join(out_dir, "last.pt")):
        raise UserError(f"{out_dir} already holds a run (last.pt); resume it (--resume) or choose another --out")
    return None


def machine():
    """The machine a run's metrics name: architecture, CPU count, torch version."""
    return f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}"


def hide_labels(batch):
    """The batch with its labels hidden (keypoints zeroed, labeled False)."""
    return {**batch, "keypoints": torch.zeros_like(batch["keypoints"]), "labeled": torch.zeros_like(batch["labeled"])}


def cat_batches(a, b):
    return {k: torch.cat([a[k], b[k]]) for k in a}


class TrainLoop:
    """The shared loop; a trainer sets `model`, `opt`, its generators and samplers (`generator`, `sampler`) and
    defines `next_batch()`, `losses(batch) -> (total, {name: value})` and `evaluate()`.

    RECORD maps history keys to keys of `evaluate()`'s dict; with `monitor` (a history key) the loop keeps the best
    weights, drops the lr on a plateau and stops early. The values `losses` returns are averaged between evaluations
    into the history as loss_<name>, except the names in TRACK (diagnostics, not in the total), kept as <name>.
    DISTRIBUTED: whether the trainer runs under torchrun."""
    RECORD = {}
    TRACK = ()
    monitor = None
    DISTRIBUTED = False
    COUNTERS = {"step": 0, "best": -1.0, "best_step": 0, "bad": 0, "drops": 0, "history": [], "seconds": 0.0,
                "data_seconds": 0.0, "running": {}, "running_steps": 0}

    def __init__(self, cfg, out_dir, device=None, progress=True, patience=math.inf, lr_drops=0, lr_drop_factor=0.1):
        self.dist = distributed.setup()              # rank and world size; one process without torchrun
        if self.dist.world_size > 1 and not self.DISTRIBUTED:
            raise UserError(f"{type(self).__name__} trains in one process: launch it without torchrun")
        self.cfg, self.out, self.progress = cfg, out_dir, progress and self.dist.main
        self.device = self.dist.device(default_device(device))
        self.patience, self.lr_drops, self.lr_drop_factor = patience, lr_drops, lr_drop_factor
        self.max_steps = cfg.max_steps               # the step budget (a subclass may set its own)
        self.seed = C.run_seed(cfg)
        torch.manual_seed(self.seed)              # before the model is built: the initialisation
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
        self.generators, self.samplers, self.desc = {}, {}, "train"
        for k, v in self.COUNTERS.items():
            setattr(self, k, type(v)(v))
        os.makedirs(out_dir, exist_ok=True)

    def generator(self, name, offset, device="cpu", per_rank=False):
        """A generator seeded with run_seed + offset, saved in the checkpoints as g_<name>. `per_rank`: each process
        of a torchrun run draws its own stream (offset + RANK_STRIDE x rank; e.g. its shard's augmentation), where a
        shared generator (the samplers') draws the same global batch in every process."""
        offset += distributed.RANK_STRIDE * self.dist.rank if per_rank else 0
        self.generators[name] = torch.Generator(device=device).manual_seed(self.seed + offset)
        return self.generators[name]

    def sampler(self, name, idx, generator):
        """An endless sampler over `idx` (None when `idx` is None), saved in the checkpoints as <name>."""
        self.samplers[name] = None if idx is None else Sampler(idx, generator)
        return self.samplers[name]

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def generator_states(self):
        return {f"g_{n}": g.get_state() for n, g in self.generators.items()}

    def state_dict(self, ranks=None):
        """The checkpoint; `ranks`: under torchrun, every process's generator_states (gathered by _evaluation)."""
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), **self.generator_states(),
                **{n: s.state_dict() if s else None for n, s in self.samplers.items()},
                **{k: getattr(self, k) for k in self.COUNTERS}, "config": C.to_dict(self.cfg),
                **({"world_size": len(ranks), "ranks": ranks} if ranks else {}), **self.extra_state()}

    def extra_state(self):
        """More for last.pt than the loop keeps (e.g. an EMA teacher's weights), as {key: tensors}; none by default."""
        return {}

    def load_extra_state(self, s):
        """Restore what `extra_state` saved from a checkpoint dict `s`; nothing by default."""

    def save(self, name, state=None):
        save_atomic(self.state_dict() if state is None else state, os.path.join(self.out, name))

    def resume(self, path=None, but=()):
        """Continue from `path` (default out_dir/last.pt; or another run's checkpoint to branch from, made with the
        same config but for the fields `but`); False when there is none. A checkpoint of another config is an error
        (config.check_same). The history file is rewritten from the checkpoint's history."""
        path = path or os.path.join(self.out, "last.pt")
        if not os.path.exists(path):
            return False
        s = torch.load(path, map_location="cpu", weights_only=True)
        C.check_same({k: v for k, v in s["config"].items() if k not in but},
                     {k: v for k, v in C.to_dict(self.cfg).items() if k not in but}, path)
        n_proc = s.get("world_size", 1)
        if n_proc != self.dist.world_size:
            raise UserError(f"{path} was written by a run on {n_proc} process(es), this one has "
                            f"{self.dist.world_size}: resume it on {n_proc} (torchrun --nproc_per_node={n_proc}, or "
                            "no torchrun for 1)")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        gens = s["ranks"][self.dist.rank] if "ranks" in s else s
        for n, g in self.generators.items():
            g.set_state(gens[f"g_{n}"].cpu())
        for n, smp in self.samplers.items():
            if smp and s.get(n):
                smp.load_state_dict(s[n])
        for k, v in self.COUNTERS.items():            # checkpoints of older versions lack the running sums
            setattr(self, k, s.get(k, type(v)(v)))
        self.load_extra_state(s)
        if self.dist.main:
            self.write_history()
        return True

    def write_history(self):
        write_text_atomic("".join(json.dumps(h) + "\n" for h in self.history),
                          os.path.join(self.out, "history.jsonl"))

    # ---- training ----------------------------------------------------------------------------------------------
    def schedule(self):
        """Set what depends on the step before it is taken (the multi-animal lr schedule); nothing by default."""

    def train_step(self):
        """One optimiser step; returns {loss name: unweighted value}."""
        self.schedule()
        t0 = time.time()
        batch = self.next_batch()
        t1 = time.time()
        loss, parts = self.losses(batch)
        parts = self.dist.average(parts)             # under torchrun: the global batch's values, in every process
        for n, v in parts.items():
            if not torch.isfinite(v):
                raise TrainingError(f"loss '{n}' became {float(v.detach())} at step {self.step + 1}; stopping (lower "
                                    f"the learning rate or the weight of '{n}')")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.after_optimizer_step()
        self.step += 1
        self.data_seconds += t1 - t0
        return {n: float(v.detach()) for n, v in parts.items()}

    def after_optimizer_step(self):
        """Right after each optimiser step, before the step counts (an EMA teacher's update); nothing by default."""

    def elapsed(self):
        return time.time() - self._t0

    def on_fit_start(self):
        """Before the first step of `fit` (the multi-animal phase checkpoints); nothing by default."""

    def on_step_end(self):
        """After a step and its evaluation (the multi-animal phase checkpoints); nothing by default."""

    def fit(self, stop_at=None):
        """Train until early stopping or max_steps (or `stop_at` steps: a simulated interruption)."""
        cfg = self.cfg
        bar = tqdm(total=self.max_steps, initial=self.step, desc=self.desc, disable=not self.progress, leave=False)
        self._t0 = time.time() - self.seconds
        self.on_fit_start()
        while self.step < self.max_steps and self.bad < self.patience and (stop_at is None or self.step < stop_at):
            for n, v in self.train_step().items():
                self.running[n] = self.running.get(n, 0.0) + v
            self.running_steps += 1
            bar.update(1)
            if self.step % cfg.eval_every == 0 or self.step == self.max_steps:
                self._evaluation(bar)
            self.on_step_end()
        bar.close()
        self.seconds = self.elapsed()
        return self

    def _evaluation(self, bar):
        """Rank 0 evaluates and checkpoints (one process: this process); under torchrun the others send it their
        generator states first and take its counters, history and learning rate afterwards."""
        ranks = self.dist.gather(self.generator_states()) if self.dist.world_size > 1 else None
        if self.dist.main:
            self._evaluate_and_save(bar, ranks)
        if self.dist.world_size > 1:
            s = self.dist.broadcast({**{k: getattr(self, k) for k in self.COUNTERS},
                                     "lr": [g["lr"] for g in self.opt.param_groups]})
            for k in self.COUNTERS:
                setattr(self, k, s[k])
            for g, lr in zip(self.opt.param_groups, s["lr"]):
                g["lr"] = lr

    def _evaluate_and_save(self, bar, ranks=None):
        ev = self.evaluate()
        self.seconds = self.elapsed()
        rec = {"step": self.step, **{k: ev[v] for k, v in self.RECORD.items()}, "seconds": round(self.seconds, 2),
               "lr": self.opt.param_groups[0]["lr"],
               **{(n if n in self.TRACK else f"loss_{n}"): v / self.running_steps for n, v in self.running.items()}}
        self.history.append(rec)
        self.running, self.running_steps = {}, 0
        self.write_history()
        if self.monitor:
            if rec[self.monitor] > self.best:
                self.best, self.best_step, self.bad = rec[self.monitor], self.step, 0
                self.save("best.pt", self.best_state())
            else:
                self.bad += 1
            late = self.step >= getattr(self.cfg, "lr_drop_at", 0.0) * self.max_steps > 0 and not self.drops
            if (self.bad >= self.patience or late) and self.drops < self.lr_drops:   # plateau or the last stretch:
                self.drops, self.bad = self.drops + 1, 0                            # a lower learning rate first
                for group in self.opt.param_groups:
                    group["lr"] *= self.lr_drop_factor
        self.save("last.pt", self.state_dict(ranks))
        bar.set_postfix(**{k: f"{rec[k]:.3g}" for k in self.RECORD}, **({"best": f"{self.best:.3g}"}
                                                                        if self.monitor else {}))


def augment(batch, cfg, meta, g):
    """The standard augmentation of a batch (rotation, scale, translation, flip with left/right keypoints swapped):
    images (B, 3, S, S), keypoints (B, K, 3) in the augmented frame, and the (B,) flips."""
    x, kp = batch["image"], batch["keypoints"]
    B, S, dev = x.shape[0], x.shape[-1], x.device
    flip_ok = bool(meta.flip_pairs) and cfg.flip > 0
    A, flipped = warp.random_affine(B, cfg.rotation, tuple(cfg.scale), 0.05, cfg.flip if flip_ok else 0.0, g, dev)
    kp = warp.flip_keypoints(geometry.warp_points(kp, A, (S, S)), flipped, meta.flip_permutation())
    return geometry.warp(x, A), kp, flipped


def forward_views(model, batch, cfg, meta, names, g):
    """The outputs dict of one step (see losses.py for its keys)."""
    lab = batch["labeled"]
    x, kp, flipped = augment(batch, cfg, meta, g)
    B, S, dev = x.shape[0], x.shape[-1], x.device
    two = bool(losses.NEEDS_SECOND_VIEW & set(names))
    if two:
        H = warp.random_homography(B, cfg.g_corner, cfg.g_rotation, generator=g, device=dev)
        x2, kp2 = geometry.warp(x, H), geometry.warp_points(kp, H, (S, S))
        x = torch.cat([x, x2])
    with autocast(dev, cfg.amp):
        o = model(x)
    hm, feats = o["heatmaps"].float(), o["features"]
    hs = hm.shape[-2:]
    out = {"labeled": lab, "heatmaps": hm[:B], "target": heatmaps.render(kp, hs, cfg.stride, cfg.sigma),
           "weight": heatmaps.weights(kp) * lab[:, None]}
    views = [("", kp, slice(0, B))]
    if two:
        out.update(heatmaps_g=hm[B:], target_g=heatmaps.render(kp2, hs, cfg.stride, cfg.sigma),
                   weight_g=heatmaps.weights(kp2) * lab[:, None], H=H)
        views.append(("_g", kp2, slice(B, 2 * B)))
    for sfx, _, sl in views:
        out["unsup" + sfx] = losses.unsup_heatmaps(out["heatmaps" + sfx], out["target" + sfx], out["weight" + sfx],
                                                   cfg.gt_in_unsup)
        if losses.NEEDS_EMBEDDINGS & set(names):
            with autocast(dev, cfg.amp):
                h = out["unsup" + sfx]
                z = models.keypoint_embeddings(feats[sl].float(), h if cfg.repr_grad_to_heatmaps else h.detach())
            out["z" + sfx] = z.float()
    if "z" in out:
        out["logits"] = model.kcn(out["z"])
    out["image_size"], out["stride"], out["te_detach"] = S, cfg.stride, cfg.te_detach
    return losses.extra_outputs(model, out, x[:B], x[B:] if two else None, batch["attributes"], flipped, meta,
                                cfg.stride, cfg.sigma)


class Trainer(TrainLoop):
    """The method's trainer (single animal, crops): `Trainer(cfg, train, val, labeled, unlabeled, out_dir).fit()`.
    `init_weights` (a state dict): a warm start from a supervised run (runs.warm_start)."""
    RECORD = {"val_pck": "pck"}
    monitor = "val_pck"
    DISTRIBUTED = True

    def __init__(self, cfg, train, val, labeled, unlabeled, out_dir, device=None, progress=True, init_weights=None):
        self.names = losses.check(cfg.losses)
        alien = [n for n in self.names if getattr(losses.LOSSES[n], "method", None) not in (None, cfg.method)]
        if alien:
            raise UserError(f"loss {alien[0]!r} belongs to --method {losses.LOSSES[alien[0]].method}, whose trainer "
                            "builds what it reads; train it with that method")
        self.semi = len(self.names) > 1 and len(unlabeled) > 0
        super().__init__(cfg, out_dir, device, progress, cfg.patience, cfg.lr_drops, cfg.lr_drop_factor)
        if self.semi and cfg.semi_max_steps:         # a semi-supervised run may have a budget of its own
            self.max_steps = cfg.semi_max_steps
        self.train, self.val, self.desc = train, val, f"train {'+'.join(self.names)}"
        self.model = models.build_model(cfg, train.meta.num_keypoints, len(train.meta.attributes), cfg.pretrained)
        if init_weights is not None:                 # a warm start: the KLN (+ KCN) of a supervised run
            missing, unexpected = self.model.load_state_dict(init_weights, strict=False)
            if unexpected or any(not k.startswith("extras.") for k in missing):
                raise UserError(f"warm start: the checkpoint does not fit this model (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
        self.model.to(self.device)
        self.forward = self.dist.wrap(self.model, self._forward, self.device)    # one DDP forward under torchrun
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        g_data = self.generator("data", 0)
        self.g_aug = self.generator("aug", 1, self.device, per_rank=True)
        self.lab = self.sampler("lab", labeled, g_data)
        self.unl = self.sampler("unl", unlabeled if self.semi else None, g_data)
        # a fair comparison: every run sees batch_size labeled crops per step; a semi-supervised run adds its
        # unlabeled crops on top (paper: half of the batch labeled, half unlabeled)
        self.n_lab = cfg.batch_size
        self.n_unl = max(1, round(cfg.batch_size * cfg.unlabeled_ratio)) if self.semi else 0

    def next_batch(self):
        """The global batch's indices, this process's shard of them (all of them in one process)."""
        b = self.train.batch(self.dist.shard(self.lab.next(self.n_lab)), self.device)
        if self.n_unl:
            b = cat_batches(b, hide_labels(self.train.batch(self.dist.shard(self.unl.next(self.n_unl)), self.device)))
        return b

    def _forward(self, model, batch):
        return forward_views(model, batch, self.cfg, self.train.meta, self.names, self.g_aug)

    def losses(self, batch):
        out = self.forward(batch)
        scale = self.dist.loss_scale(losses.counts(out, self.names)) if self.dist.world_size > 1 else None
        return losses.total(out, self.names, self.cfg.weights, scale=scale)

    def evaluate(self):
        return evaluate(self.model, self.val, self.cfg.stride, self.device, self.cfg.amp)

    def best_state(self):
        return {"model": self.model.state_dict(), "config": C.to_dict(self.cfg), "meta": self.train.meta.to_dict(),
                "step": self.step}

    def run_metrics(self):
        """What this trainer adds to a run's metrics.json (none for the method's own)."""
        return {}

    def load_best(self):
        s = torch.load(os.path.join(self.out, "best.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(s["model"])
        return self.model
