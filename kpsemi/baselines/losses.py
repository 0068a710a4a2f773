"""The losses of the paper's other Table 1 rows and Honari's Seq-MT, registered in the method's loss registry
(kpsemi/method/losses.py) when `kpsemi.baselines` is imported:

- **gen** (Jakab et al. 2018, injected into our pipeline as the paper did): the heatmaps of an image x become a
  keypoint bottleneck which, with the appearance of a geometrically transformed copy x' = g(x, s), conditions a
  decoder that must reconstruct x (heads.py). Geometry can only come from the keypoints, so they learn to follow the
  object. No ImageNet network is available offline for a perceptual loss, so the reconstruction loss is L1 on pixels
  + L1 on image gradients (edges) at two scales.
- **attr** (Seq-MT, Honari et al. 2018): landmarks by soft-argmax feed an attribute classifier (the embedded set's
  per-image attributes); the attribute loss flows back into the landmark network on every image that has
  attributes, also those without landmarks.
- **elt_lm** (Honari et al.): || T(L(x)) - L(T(x)) ||^2 on soft-argmax coordinates (Seq-MT's L+ELT rows); the heatmap
  form the Moskvyak paper compares with is the method's `elt`.

- **mt**, **dual** (mean_teacher.py, dual.py): a teaching network's heatmaps on the weak (easy) view, moved into the
  frame of the strong (hard) view, are the target of the student's heatmaps there; the target passes no gradient.
- **cons** (consistency.py): the same squared difference between two equally hard views, both with gradient (the
  setting that collapses).

The last three read keys their methods' trainers build (views.ViewTrainer.outputs): unl (N, K, h, w) the heatmaps
on the unlabeled views, unl_target (N, K, h, w) the target in their frame, unl_valid (N, 1, h, w) 1 where a pixel
has a target (or (N, K, h, w), a weight per keypoint too: mean_teacher's peak targets); `method=` ties each to its
trainer.

PL (pseudo-labels) is a two-stage method of its own: see pseudo.py and kpsemi/runs.py.
"""
import torch
import torch.nn.functional as F

from kpsemi.baselines import heads
from kpsemi.data import geometry
from kpsemi.method import heatmaps
from kpsemi.method.losses import register


def _grad(img):
    return img[..., :, 1:] - img[..., :, :-1], img[..., 1:, :] - img[..., :-1, :]


def generation(out):
    """Reconstruction of x from x' + keypoints: L1 on pixels and on image gradients, at full and half size."""
    total = 0.0
    r, x = out["recon"].float(), out["image"].float()
    for _ in range(2):
        gr, gx = _grad(r), _grad(x)
        total = total + (r - x).abs().mean() + sum((a - b).abs().mean() for a, b in zip(gr, gx))
        r, x = F.avg_pool2d(r, 2), F.avg_pool2d(x, 2)
    return total


def attributes(out):
    """Seq-MT attribute loss: binary cross-entropy on the known (>= 0) attributes of every sample."""
    known = out["attributes"] >= 0
    if not known.any():
        return out["attr_logits"].sum() * 0.0
    return F.binary_cross_entropy_with_logits(out["attr_logits"][known], out["attributes"][known].float())


def known_attributes(out):
    """How many attribute values the attribute loss averages over."""
    return (out["attributes"] >= 0).sum()


def _landmarks_moved(out):
    """Soft-argmax landmarks of x moved by T (B, K, 3; third column > 0 where T keeps them inside the image) and
    the landmarks of T(x) (B, K, 2)."""
    S = out["image_size"]
    c1 = heatmaps.soft_argmax(out["heatmaps"], out["stride"], heads.SOFTARGMAX_BETA)
    c2 = heatmaps.soft_argmax(out["heatmaps_g"], out["stride"], heads.SOFTARGMAX_BETA)
    return geometry.warp_points(torch.cat([c1, torch.full_like(c1[..., :1], 2.0)], -1), out["H"], (S, S)), c2


def landmark_elt(out):
    """Honari's ELT on coordinates: || T(L(x)) - L(T(x)) ||^2 / S^2 over landmarks T keeps inside the image."""
    moved, c2 = _landmarks_moved(out)
    keep = moved[..., 2] > 0
    if not keep.any():
        return c2.sum() * 0.0
    return (((moved[..., :2] - c2) / out["image_size"]) ** 2).sum(-1)[keep].mean()


@torch.no_grad()
def kept_landmarks(out):
    """How many landmarks the landmark ELT averages over (those T keeps inside the image)."""
    return (_landmarks_moved(out)[0][..., 2] > 0).sum()


def _masked_mse(pred, target, valid):
    """The weighted mean of (pred - target)^2 over the pixels that have a target: pred, target (N, K, h, w), valid
    (N, 1, h, w) in {0, 1} (every channel of a pixel alike) or (N, K, h, w) in [0, 1] (a weight per keypoint too);
    sum(valid * (pred - target)^2) / sum(valid broadcast to (N, K, h, w)), 0 when no pixel has one."""
    return (valid * (pred - target) ** 2).sum() / valid.expand_as(pred).sum().clamp_min(1.0)


def teacher_consistency(out):
    """mt and dual: || student(x_hard) - H(teacher(x_easy)) ||^2 over the pixels of the hard view that come from the
    easy one, the teacher's side detached (it teaches, it does not learn from this loss)."""
    return _masked_mse(out["unl"].float(), out["unl_target"].detach().float(), out["unl_valid"])


def view_consistency(out):
    """cons: || f(x_1) - M(f(x_2)) ||^2 between two equally hard views of an unlabeled crop, view 2's heatmaps moved
    into view 1's frame, over the pixels that have a counterpart; both sides pass gradient."""
    return _masked_mse(out["unl"].float(), out["unl_target"].float(), out["unl_valid"])


register("gen", generation, second_view=True, head=heads.decoder, outputs=heads.gen_outputs)
register("attr", attributes, head=heads.attribute_head, outputs=heads.attr_outputs, count=known_attributes)
register("elt_lm", landmark_elt, second_view=True, count=kept_landmarks)
register("mt", teacher_consistency, method="mean_teacher")
register("dual", teacher_consistency, method="dual")
register("cons", view_consistency, method="consistency")
