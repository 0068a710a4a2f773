"""The trainer: batches of labeled + unlabeled crops, on-device augmentation, the losses, early stopping,
checkpoint/resume.

One step: draw labeled and unlabeled indices (50 % / 50 % by default) -> batch dict -> standard augmentation
(rotation, scale, flip) -> if a loss needs it, a second view x' = g(x, s) by a random perspective warp -> the model
on both views at once -> outputs dict (heatmaps, targets, z, KCN logits, ...) -> losses.total -> Adam.
Every `eval_every` steps: validation PCK, keep the best weights, write last.pt (everything needed to resume:
model, optimizer, both RNG states, sampler positions, counters, history); after `patience` evaluations without
improvement, lower the learning rate (`lr_drops` times, by `lr_drop_factor`), then stop; or stop at `max_steps`.
"""
import json
import math
import os
import time

import torch
from tqdm.auto import tqdm

from kpsemi import config as C
from kpsemi import baselines, heatmaps, losses, models, warp
from kpsemi.evaluate import autocast, evaluate
from kpsemi.paths import save_atomic
from kpsemi.records import UserError


class TrainingError(RuntimeError):
    pass


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
        self.perm, self.pos = s["perm"], s["pos"]


def hide_labels(batch):
    b = dict(batch)
    b["keypoints"] = torch.zeros_like(b["keypoints"])
    b["labeled"] = torch.zeros_like(b["labeled"])
    return b


def cat_batches(a, b):
    return {k: torch.cat([a[k], b[k]]) for k in a}


def forward_views(model, batch, cfg, meta, names, g):
    """The outputs dict of one step (see losses.py for its keys)."""
    x, kp, lab = batch["image"], batch["keypoints"], batch["labeled"]
    B, S, dev = x.shape[0], x.shape[-1], x.device
    flip_ok = bool(meta.flip_pairs) and cfg.flip > 0
    A, flipped = warp.random_affine(B, cfg.rotation, tuple(cfg.scale), 0.05, cfg.flip if flip_ok else 0.0, g, dev)
    x = warp.warp(x, A)
    kp = warp.flip_keypoints(warp.warp_points(kp, A, (S, S)), flipped, meta.flip_permutation())
    two = bool(losses.NEEDS_SECOND_VIEW & set(names))
    if two:
        H = warp.random_homography(B, cfg.g_corner, cfg.g_rotation, generator=g, device=dev)
        x2, kp2 = warp.warp(x, H), warp.warp_points(kp, H, (S, S))
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
        use_gt = (out["weight" + sfx] > 0) & cfg.gt_in_unsup                      # (B, K)
        out["unsup" + sfx] = torch.where(use_gt[..., None, None], out["target" + sfx], out["heatmaps" + sfx])
        if losses.NEEDS_EMBEDDINGS & set(names):
            with autocast(dev, cfg.amp):
                h = out["unsup" + sfx]
                z = models.keypoint_embeddings(feats[sl].float(), h if cfg.repr_grad_to_heatmaps else h.detach())
            out["z" + sfx] = z.float()
    if "z" in out:
        out["logits"] = model.kcn(out["z"])
    out["image_size"], out["stride"], out["te_detach"] = S, cfg.stride, cfg.te_detach
    return baselines.extra_outputs(model, out, x[:B], x[B:] if two else None, batch["attributes"], flipped, meta,
                                   cfg.stride, cfg.sigma)


class Trainer:
    def __init__(self, cfg, train, val, labeled, unlabeled, out_dir, device=None, progress=True, init_weights=None):
        self.cfg, self.train, self.val, self.out = cfg, train, val, out_dir
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress
        self.names = list(cfg.losses)
        unknown = set(self.names) - set(losses.LOSSES)
        if unknown or "sup" not in self.names:
            raise UserError(f"losses must include 'sup' and come from {sorted(losses.LOSSES)}; got {self.names}")
        self.semi = len(self.names) > 1 and len(unlabeled) > 0
        seed = C.run_seed(cfg)
        torch.manual_seed(seed)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
        self.model = build_model(cfg, train.meta.num_keypoints, len(train.meta.attributes), cfg.pretrained)
        if init_weights is not None:                 # a warm start: the KLN (+ KCN) of a supervised run
            missing, unexpected = self.model.load_state_dict(init_weights, strict=False)
            if unexpected or any(not k.startswith("extras.") for k in missing):
                raise UserError(f"warm start: the checkpoint does not fit this model (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
        self.model.to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.g_data = torch.Generator().manual_seed(seed)
        self.g_aug = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.lab = Sampler(labeled, self.g_data)
        self.unl = Sampler(unlabeled, self.g_data) if self.semi else None
        # a fair comparison: every run sees batch_size labeled crops per step; a semi-supervised run adds its
        # unlabeled crops on top (paper: half of the batch labeled, half unlabeled)
        self.n_lab = cfg.batch_size
        self.n_unl = max(1, round(cfg.batch_size * cfg.unlabeled_ratio)) if self.semi else 0
        self.step, self.best, self.best_step, self.bad, self.drops, self.history = 0, -1.0, 0, 0, 0, []
        self.seconds, self.data_seconds = 0.0, 0.0
        os.makedirs(out_dir, exist_ok=True)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "g_data": self.g_data.get_state(),
                "g_aug": self.g_aug.get_state(), "lab": self.lab.state_dict(),
                "unl": self.unl.state_dict() if self.unl else None, "step": self.step, "best": self.best,
                "best_step": self.best_step, "bad": self.bad, "drops": self.drops, "history": self.history,
                "seconds": self.seconds,
                "data_seconds": self.data_seconds, "config": C.to_dict(self.cfg)}

    def save(self, name, state):
        save_atomic(state, os.path.join(self.out, name))

    def resume(self, path=None):
        path = path or os.path.join(self.out, "last.pt")
        if not os.path.exists(path):
            return False
        s = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.g_data.set_state(s["g_data"].cpu())
        self.g_aug.set_state(s["g_aug"].cpu() if self.device == "cpu" else s["g_aug"])
        self.lab.load_state_dict(s["lab"])
        if self.unl and s["unl"]:
            self.unl.load_state_dict(s["unl"])
        for k in ("step", "best", "best_step", "bad", "drops", "history", "seconds", "data_seconds"):
            setattr(self, k, s[k])
        return True

    # ---- training ----------------------------------------------------------------------------------------------
    def next_batch(self):
        b = self.train.batch(self.lab.next(self.n_lab), self.device)
        if self.n_unl:
            b = cat_batches(b, hide_labels(self.train.batch(self.unl.next(self.n_unl), self.device)))
        return b

    def train_step(self):
        cfg = self.cfg
        t0 = time.time()
        batch = self.next_batch()
        t1 = time.time()
        out = forward_views(self.model, batch, cfg, self.train.meta, self.names, self.g_aug)
        loss, parts = losses.total(out, self.names, cfg.weights)
        for n, v in parts.items():
            if not torch.isfinite(v):
                raise TrainingError(f"loss '{n}' became {float(v.detach())} at step {self.step + 1}; stopping (lower the "
                                    f"learning rate or the weight of '{n}')")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.data_seconds += t1 - t0
        return {n: float(v.detach()) for n, v in parts.items()}

    def fit(self, stop_at=None):
        """Train until early stopping or max_steps (or `stop_at` steps: a simulated interruption)."""
        cfg = self.cfg
        hist_path = os.path.join(self.out, "history.jsonl")
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"train {'+'.join(self.names)}",
                   disable=not self.progress, leave=False)
        running, t_start = {}, time.time() - self.seconds
        while self.step < cfg.max_steps and self.bad < cfg.patience:
            if stop_at is not None and self.step >= stop_at:
                break
            parts = self.train_step()
            for n, v in parts.items():
                running[n] = running.get(n, 0.0) + v
            bar.update(1)
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                n_steps = cfg.eval_every if self.step % cfg.eval_every == 0 else self.step % cfg.eval_every
                val = evaluate(self.model, self.val, cfg.stride, self.device, cfg.amp)
                self.seconds = time.time() - t_start
                rec = {"step": self.step, "val_pck": val["pck"], "seconds": round(self.seconds, 2),
                       "lr": self.opt.param_groups[0]["lr"],
                       **{f"loss_{n}": v / n_steps for n, v in running.items()}}
                self.history.append(rec)
                with open(hist_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                running = {}
                if val["pck"] > self.best:
                    self.best, self.best_step, self.bad = val["pck"], self.step, 0
                    self.save("best.pt", {"model": self.model.state_dict(), "config": C.to_dict(cfg),
                                          "meta": _meta_state(self.train.meta), "step": self.step})
                else:
                    self.bad += 1
                if self.bad >= cfg.patience and self.drops < cfg.lr_drops:   # plateau: a lower learning rate first
                    self.drops, self.bad = self.drops + 1, 0
                    for group in self.opt.param_groups:
                        group["lr"] *= cfg.lr_drop_factor
                self.save("last.pt", self.state_dict())
                bar.set_postfix(val_pck=f"{val['pck']:.1f}", best=f"{self.best:.1f}")
        bar.close()
        self.seconds = time.time() - t_start
        return self

    def load_best(self):
        s = torch.load(os.path.join(self.out, "best.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(s["model"])
        return self.model


def _meta_state(meta):
    return {"name": meta.name, "keypoints": list(meta.keypoints), "skeleton": [list(e) for e in meta.skeleton],
            "flip_pairs": [list(e) for e in meta.flip_pairs], "classes": list(meta.classes),
            "attributes": list(meta.attributes), "metric": meta.metric}


def build_model(cfg, num_keypoints, num_attributes, pretrained=False):
    """KLN + KCN, plus the extra heads the configured losses need (baselines.heads) as `model.extras`."""
    c = cfg if isinstance(cfg, dict) else C.to_dict(cfg)
    m = models.KeypointModel(num_keypoints, c["backbone"], pretrained, c["embed_dim"], c["head_channels"])
    m.extras = baselines.heads(c["losses"], num_keypoints, num_attributes)
    return m


def load_model(path, device="cpu"):
    """(model, config dict, meta dict) from a best.pt written by the trainer (loaded with weights_only=True)."""
    s = torch.load(path, map_location=device, weights_only=True)
    c = s["config"]
    m = build_model(c, len(s["meta"]["keypoints"]), len(s["meta"]["attributes"])).to(device)
    m.load_state_dict(s["model"])
    m.eval()
    return m, c, s["meta"]


def finite_or_none(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None
