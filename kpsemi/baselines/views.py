"""The views of the methods after the paper (mean_teacher, dual, consistency) and the trainer they share.

Frames. Every view of an unlabeled image is made from its weak (easy) view x, the standard augmentation of every run
(method/train.py's `augment`): a strong (hard) view is x_s = jitter(warp(x, H)), H a random perspective warp larger
than TE's g (config: strong_rotation, strong_scale, strong_corner) and the jitter photometric (strong_jitter; dual
adds Joint Cutout, below). H is a normalised matrix (kpsemi/data/geometry.py), so `geometry.warp(h, H)` moves
heatmaps (B, K, h, w) predicted on x into the frame of x_s exactly as it moved the image. H holds no flip, so the
keypoint channels keep their order. Pixels of x_s whose source lies outside x have no target: `to_frame` returns the
moved heatmaps and a (B, 1, h, w) mask, a ones image warped the same way with nearest sampling, 0 there, and the
losses (kpsemi/baselines/losses.py) weigh every pixel by it.

Joint Cutout (dual; Xie et al., ICCV 2021, the hard augmentation): squares of side cutout_size x the crop side (16 px
of a 64-px crop at the CPU presets), filled with the ImageNet mean colour (zero after the network's input
normalisation), centred on cutout_joints keypoints chosen at random among those the teaching network predicts on the
easy view, brought into the hard frame by H: the student must find joints it cannot see from the rest of the body.

Heatmap energy: the mean over crops and keypoints of a heatmap's maximum, the quantity that falls to zero when a
consistency loss collapses the predictions to all background (notebook 13); every step records it for the labeled
crops and for the unlabeled views the network learns from (history.jsonl: energy_labeled, energy_unlabeled).

`ViewTrainer` is the method's Trainer (same samplers, batch_size labeled + batch_size x unlabeled_ratio unlabeled
crops per step, evaluation, early stopping, checkpoints) with a `losses` of each method's own. Targets come from a
network in eval mode under no_grad: BatchNorm with its running statistics, as at evaluation, so a target is what the
teaching network would be scored with, and the composition of the step's batch does not leak into it.
"""
import torch

from kpsemi.data import geometry
from kpsemi.errors import UserError
from kpsemi.method import heatmaps, losses
from kpsemi.method.device import autocast
from kpsemi.method.models import MEAN
from kpsemi.method.train import Trainer, augment
from kpsemi.method.warp import random_homography

GRAY = (0.299, 0.587, 0.114)          # luma weights of the saturation jitter


def strong_homography(B, cfg, generator, device):
    """(B, 3, 3) normalised warps H from the weak to the strong view (config strong_*)."""
    return random_homography(B, cfg.strong_corner, cfg.strong_rotation, tuple(cfg.strong_scale), 0.05, generator,
                             device)


def jitter(x, strength, generator):
    """Photometric jitter of images (B, 3, S, S) in [0, 1]: brightness, contrast and saturation, each a factor drawn
    per image from U[1 - strength, 1 + strength]."""
    B = x.shape[0]
    b, c, s = ((torch.rand(3, B, 1, 1, 1, generator=generator, device=x.device) * 2 - 1) * strength + 1).unbind(0)
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = (x * x.new_tensor(GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)                  # (B, 1, S, S)
    return ((x - gray) * s + gray).clamp(0, 1)


def strong_view(x, cfg, generator):
    """(x_s, H): the strong view jitter(warp(x, H)) of weak views x (B, 3, S, S)."""
    H = strong_homography(x.shape[0], cfg, generator, x.device)
    return jitter(geometry.warp(x, H), cfg.strong_jitter, generator), H


def inside(h, H):
    """(B, 1, h, w): 1 where a pixel of the view warped by H from a view of maps h (B, K, h, w) has its source inside
    that view, 0 where it comes from outside (a ones image warped by H, nearest sampling)."""
    return geometry.warp(torch.ones_like(h[:, :1]), H, mode="nearest")


def to_frame(h, H):
    """Heatmaps h (B, K, h, w) of one view moved into the frame of a view warped from it by H, and the (B, 1, h, w)
    mask of the pixels there that have a target (`inside`)."""
    return geometry.warp(h, H), inside(h, H)


def cutout_centres(h_easy, H, n, stride, generator):
    """(B, n, 2) pixel centres in the hard frame: n keypoints drawn at random (per image) among the decoded peaks
    of the easy-view heatmaps h_easy (B, K, h, w), moved by H. A centre that leaves the crop is placed far outside
    (it cuts nothing)."""
    B, K = h_easy.shape[:2]
    xy, _ = heatmaps.decode(h_easy.float(), stride)                                         # (B, K, 2)
    pick = torch.rand(B, K, generator=generator, device=xy.device).argsort(1)[:, :n]         # (B, n)
    xy = xy.gather(1, pick[..., None].expand(-1, -1, 2))
    S = h_easy.shape[-1] * stride
    moved = geometry.warp_points(torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], -1), H, (S, S))
    return torch.where(moved[..., 2:] > 0, moved[..., :2], torch.full_like(moved[..., :2], -1e6))


def joint_cutout(x, centres, side):
    """Images x (B, 3, S, S) with a square of `side` pixels around each centre (B, n, 2) filled with the ImageNet
    mean colour; pixel (i, j) is cut when its centre (j + 0.5, i + 0.5) lies within side / 2 of a centre in both
    coordinates."""
    S = x.shape[-1]
    p = torch.arange(S, device=x.device, dtype=x.dtype) + 0.5
    near_x = (p.view(1, 1, 1, S) - centres[..., 0, None, None]).abs() < side / 2            # (B, n, 1, S)
    near_y = (p.view(1, 1, S, 1) - centres[..., 1, None, None]).abs() < side / 2            # (B, n, S, 1)
    cut = (near_x & near_y).any(1, keepdim=True)                                            # (B, 1, S, S)
    return torch.where(cut, x.new_tensor(MEAN).view(1, 3, 1, 1), x)


def energy(h):
    """The mean over crops and keypoints of each heatmap's maximum: h (B, K, h, w) -> scalar."""
    return h.detach().float().amax(dim=(-2, -1)).mean()


class ViewTrainer(Trainer):
    """The method's Trainer with the losses of a method after the paper: the subclass's `losses(batch)` builds the
    outputs dict its registered losses read. Needs unlabeled images."""
    TRACK = ("energy_labeled", "energy_unlabeled")

    def __init__(self, cfg, train, val, labeled, unlabeled, out_dir, device=None, progress=True, init_weights=None):
        if len(unlabeled) == 0:
            raise UserError(f"{cfg.method} learns from unlabeled images and there are none (at 100 % labels the "
                            "embedded set has none; own data can add --unlabeled-dir or a DeepLabCut project's "
                            "video frames)")
        super().__init__(cfg, train, val, labeled, unlabeled, out_dir, device, progress, init_weights)
        self.desc = f"train {cfg.method}"

    def weak_views(self, batch):
        """The standard augmentation of the step's batch: labeled images (n_lab, 3, S, S), their keypoints
        (n_lab, K, 3) and the unlabeled images' weak views (n_unl, 3, S, S)."""
        x, kp, _ = augment(batch, self.cfg, self.train.meta, self.g_aug)
        return x[:self.n_lab], kp[:self.n_lab], x[self.n_lab:]

    def predict(self, model, x):
        """Heatmaps (B, K, h, w) of images x by `model` in its current mode, with gradient."""
        with autocast(self.device, self.cfg.amp):
            return model(x)["heatmaps"].float()

    @torch.no_grad()
    def target_heatmaps(self, model, x):
        """Heatmaps (B, K, h, w) of a teaching network in eval mode, without gradient (its mode is restored)."""
        was = model.training
        model.eval()
        h = self.predict(model, x)
        model.train(was)
        return h

    def outputs(self, hm_lab, kp_lab, hm_unl, target, valid):
        """The outputs dict of one network: the supervised keys for its labeled crops (see method/losses.py) and
        unl (N, K, h, w) its heatmaps on the unlabeled views it learns from, unl_target the target in their frame,
        unl_valid (N, 1, h, w) which pixels have one."""
        lab = torch.ones(hm_lab.shape[0], dtype=torch.bool, device=hm_lab.device)
        return {"labeled": lab, "heatmaps": hm_lab,
                "target": heatmaps.render(kp_lab, hm_lab.shape[-2:], self.cfg.stride, self.cfg.sigma),
                "weight": heatmaps.weights(kp_lab), "unl": hm_unl, "unl_target": target, "unl_valid": valid}

    def total(self, outs):
        """(sum of the networks' weighted losses, {name: mean over the networks} + the energies of the first)."""
        parts = [losses.total(o, self.names, self.cfg.weights) for o in outs]
        mean = {n: sum(p[1][n] for p in parts) / len(parts) for n in self.names}
        return sum(p[0] for p in parts), {**mean, "energy_labeled": energy(outs[0]["heatmaps"]),
                                          "energy_unlabeled": energy(outs[0]["unl"])}
