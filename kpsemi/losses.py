"""All training losses, in one registry: adding a loss is one function + one line in LOSSES.

Each loss takes the step's outputs dict (built by train.forward_views) and returns a scalar. Keys used:

    heatmaps   (B, K, h, w)  predictions on the augmented images x           (view 1)
    heatmaps_g (B, K, h, w)  predictions on x' = g(x, s)                      (view 2, perspective warp)
    target, target_g         ground-truth Gaussian heatmaps of both views     (zeros for unlabeled samples)
    weight, weight_g (B, K)  1 where a keypoint is labeled in that view
    labeled (B,) bool        which samples carry labels
    unsup, unsup_g           heatmaps the unsupervised losses use: ground truth for labeled keypoints
                             (paper §4.2, switchable off), predictions elsewhere
    H (B, 3, 3)              g as a normalised homography (warp.py)
    z, z_g (B, K, C)         semantic keypoint representations z_i = GMP(F * h_i) of both views
    logits (B, K, K)         KCN outputs for every z_i of view 1
    recon, image; attr_logits, attributes; image_size, stride    used by the baselines' losses (baselines.py)

Total (paper Eq. 5): L = sum_name weight[name] * LOSSES[name](out); defaults (1e3, 0.5, 1e2, 1e2).
"""
import torch
import torch.nn.functional as F

from kpsemi import warp
from kpsemi.baselines import attributes, generation, landmark_elt


def supervised(out):
    """L_sup: mean squared error between predicted and ground-truth heatmaps of the labeled samples, unlabeled
    keypoints masked out (mean over labeled samples, keypoints and pixels)."""
    lab = out["labeled"]
    if not lab.any():
        return out["heatmaps"].sum() * 0.0
    h, t, w = out["heatmaps"][lab], out["target"][lab], out["weight"][lab]
    return (w[..., None, None] * (h - t) ** 2).mean()


def semantic_consistency(out):
    """L_sc (Eq. 1): cross-entropy of KCN(z_i) against the keypoint's own index i, averaged over keypoints and
    samples (the order of the heatmaps is fixed, so the labels are free)."""
    logits = out["logits"]
    B, K, _ = logits.shape
    labels = torch.arange(K, device=logits.device).expand(B, K)
    return F.cross_entropy(logits.reshape(B * K, K).float(), labels.reshape(-1))


def transformation_equivariance(out):
    """L_te (Eq. 2): || f(g(x)) - g(f(x)) ||^2, the same g applied to the image and to its heatmaps. With
    out["te_detach"] the target side g(f(x)) passes no gradient: the view x teaches the warped view g(x), and
    the loss cannot be lowered by flattening the heatmaps of x (the paper's equation leaves this open)."""
    target = out["unsup"].float()
    if out.get("te_detach"):
        target = target.detach()
    moved = warp.warp(target, out["H"])
    return ((out["heatmaps_g"].float() - moved) ** 2).mean()


def transformation_invariance(out):
    """L_ti (Eq. 4): || z - z' ||^2 between the representations of x and g(x), each z_i scaled to unit length
    first, so the loss cannot be lowered by shrinking z (it equals 2 - 2 cos(z_i, z'_i)); mean over samples and
    keypoints."""
    z, z2 = F.normalize(out["z"].float(), dim=-1), F.normalize(out["z_g"].float(), dim=-1)    # (B, K, C)
    return ((z - z2) ** 2).sum(-1).mean()


def equivariant_landmark_transformation(out):
    """ELT (Honari et al. 2018) as the paper compares it: || f(x) - g^-1(f(g(x))) ||^2, the heatmaps of the
    transformed image brought back by the inverse transform. What left the image under g stays lost."""
    back = warp.warp(out["heatmaps_g"].float(), torch.linalg.inv(out["H"]))
    return ((out["unsup"].float() - back) ** 2).mean()


LOSSES = {
    "sup": supervised,
    "sc": semantic_consistency,
    "te": transformation_equivariance,
    "ti": transformation_invariance,
    "elt": equivariant_landmark_transformation,
    "gen": generation,          # Jakab et al.: reconstruct x from g(x) + the keypoint bottleneck
    "attr": attributes,         # Honari et al. Seq-MT: attributes from the landmarks
    "elt_lm": landmark_elt,     # Honari et al. ELT on soft-argmax coordinates
}
NEEDS_SECOND_VIEW = {"te", "ti", "elt", "gen", "elt_lm"}
NEEDS_EMBEDDINGS = {"sc", "ti"}


def total(out, names, weights):
    """(weighted sum, {name: unweighted value}) for the losses `names`."""
    parts = {n: LOSSES[n](out) for n in names}
    return sum(weights[n] * v for n, v in parts.items()), parts
