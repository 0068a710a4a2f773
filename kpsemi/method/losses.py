"""All training losses, in one registry: adding a loss is one function + one `register` call.

Each loss takes the step's outputs dict (built by train.forward_views) and returns a scalar. Keys used:

    heatmaps   (B, K, h, w)  predictions on the augmented images x           (view 1)
    heatmaps_g (B, K, h, w)  predictions on x' = g(x, s)                      (view 2, perspective warp)
    target, target_g         ground-truth Gaussian heatmaps of both views     (zeros for unlabeled samples)
    weight, weight_g (B, K)  1 where a keypoint is labeled in that view
    labeled (B,) bool        which samples carry labels
    unsup, unsup_g           heatmaps the unsupervised losses use: ground truth for labeled keypoints
                             (paper §4.2, switchable off), predictions elsewhere
    H (B, 3, 3)              g as a normalised homography (kpsemi/data/geometry.py)
    z, z_g (B, K, C)         semantic keypoint representations z_i = GMP(F * h_i) of both views
    logits (B, K, K)         KCN outputs for every z_i of view 1
    image_size, stride       input side and heatmap stride

An entry of the registry (`Loss`) is the function and what it needs from a training step: a second view
x' = g(x, s), the representations z, an extra head on the model (built by `head(K, A)`, kept as
`model.extras[name]`), a hook `outputs(head, out, step)` that adds the keys the loss reads, or the method whose own
trainer builds its keys (the methods after the paper, kpsemi/baselines/). The baselines
(kpsemi/baselines/losses.py) register theirs that way when `kpsemi.baselines` is imported; the method itself never
imports them. The multi-animal losses use the same `Loss` type and `total` (kpsemi/multi/losses.py).

Total (paper Eq. 5): L = sum_name weight[name] * LOSSES[name](out); defaults (1e3, 0.5, 1e2, 1e2).

Each loss is a mean over some terms of the batch; `count(out)` says how many (default: the samples; the supervised
loss: the labeled samples). Under DDP every process holds a shard of the global batch, and `total` scales each loss
by world_size x local count / global count (kpsemi/method/distributed.py), so the gradient is that of the mean over
the global batch.
"""
from collections.abc import Set
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kpsemi.data import geometry
from kpsemi.errors import UserError


@dataclass(frozen=True)
class Loss:
    """One registry entry: `fn(out) -> scalar` and what it needs from a training step."""
    fn: Callable
    second_view: bool = False        # x' = g(x, s): heatmaps_g, target_g, H, ...
    embeddings: bool = False         # z (and z_g with a second view), the KCN logits
    head: Callable = None            # head(num_keypoints, num_attributes) -> nn.Module, as model.extras[name]
    outputs: Callable = None         # outputs(head, out, step) adds the keys fn reads (step: see extra_outputs)
    count: Callable = None           # count(out) -> how many terms fn averages over (None: the samples)
    method: str = None               # the method (config.method) whose trainer builds the keys fn reads; None: any

    def __call__(self, out):
        return self.fn(out)


def unsup_heatmaps(heatmaps, target, weight, use_gt=True):
    """The heatmaps the unsupervised losses see (paper §4.2): the ground-truth target for labeled keypoints
    (weight > 0) when use_gt, the prediction everywhere else. (B, K, h, w) x2, (B, K) -> (B, K, h, w)."""
    gt = (weight > 0) & use_gt
    return torch.where(gt[..., None, None], target, heatmaps)


def supervised(out):
    """L_sup: mean squared error between predicted and ground-truth heatmaps of the labeled samples, unlabeled
    keypoints masked out (mean over labeled samples, keypoints and pixels)."""
    lab = out["labeled"]
    if not lab.any():
        return out["heatmaps"].sum() * 0.0
    h, t, w = out["heatmaps"][lab], out["target"][lab], out["weight"][lab]
    return (w[..., None, None] * (h - t) ** 2).mean()


def labeled_samples(out):
    """The number of labeled samples of the batch: what the supervised loss averages over."""
    return out["labeled"].sum()


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
    moved = geometry.warp(target, out["H"])
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
    back = geometry.warp(out["heatmaps_g"].float(), torch.linalg.inv(out["H"]))
    return ((out["unsup"].float() - back) ** 2).mean()


LOSSES = {}


def register(name, fn, **what):
    """Add a loss to the registry (see `Loss` for `needs`); returns the entry."""
    LOSSES[name] = Loss(fn, **what)
    return LOSSES[name]


def needs(name, what):
    """Whether the loss `name` needs `what` ("second_view", "embeddings"); a plain function needs nothing."""
    return bool(getattr(LOSSES[name], what, False))


class _Needing(Set):
    """The registered losses that need one thing, read live from the registry (a set: `names & NEEDS_...`)."""

    def __init__(self, what):
        self.what = what

    def __iter__(self):
        return (n for n in LOSSES if needs(n, self.what))

    def __contains__(self, name):
        return name in LOSSES and needs(name, self.what)

    def __len__(self):
        return sum(1 for _ in self)

    @classmethod
    def _from_iterable(cls, it):
        return set(it)


NEEDS_SECOND_VIEW = _Needing("second_view")
NEEDS_EMBEDDINGS = _Needing("embeddings")


def check(names, required=("sup",)):
    """`names` as a list; a UserError naming the registered losses when one of `names` is not registered or one of
    `required` is missing."""
    names = list(names)
    unknown = [n for n in names if n not in LOSSES]
    missing = [n for n in required if n not in names]
    if unknown or missing:
        raise UserError(f"losses must come from the registered ones ({', '.join(LOSSES)})"
                        + "".join(f" and include {n!r}" for n in required) + f"; got {names}"
                        + ("; the baselines' losses register when kpsemi.baselines is imported" if unknown else ""))
    return names


def heads(names, num_keypoints, num_attributes):
    """The extra modules the losses `names` need, in registry order (empty for the paper's own method)."""
    check(names, required=())
    return nn.ModuleDict({n: LOSSES[n].head(num_keypoints, num_attributes) for n in LOSSES
                          if n in names and getattr(LOSSES[n], "head", None)})


def extra_outputs(model, out, x, x2, attributes, flipped, meta, stride, sigma):
    """Run the `outputs` hook of every extra head of `model` on the step's outputs dict (called by
    train.forward_views): x (B, 3, S, S) and x2 (its second view or None) the images, attributes (B, A), flipped
    (B,) the augmentation's flips, meta the data's Meta."""
    step = {"x": x, "x_g": x2, "attributes": attributes, "flipped": flipped, "meta": meta, "stride": stride,
            "sigma": sigma}
    for name, head in model.extras.items():
        LOSSES[name].outputs(head, out, step)
    return out


def counts(out, names, registry=None):
    """{name: how many terms the loss averages over in this batch} (the entry's `count`, default the samples)."""
    registry = LOSSES if registry is None else registry
    dev, n = out["heatmaps"].device, out["heatmaps"].shape[0]
    return {k: torch.as_tensor(registry[k].count(out) if getattr(registry[k], "count", None) else n, device=dev)
            for k in names}


def total(out, names, weights, registry=None, scale=None):
    """(weighted sum, {name: unweighted value}) of the losses `names` of `registry` (default: LOSSES); `scale`
    ({name: factor}, from distributed.Context.loss_scale under DDP) multiplies each loss first."""
    registry = LOSSES if registry is None else registry
    parts = {n: registry[n](out) for n in names}
    if scale is not None:
        parts = {n: v * scale[n] for n, v in parts.items()}
    return sum(weights[n] * v for n, v in parts.items()), parts


register("sup", supervised, count=labeled_samples)
register("sc", semantic_consistency, embeddings=True)
register("te", transformation_equivariance, second_view=True)
register("ti", transformation_invariance, second_view=True, embeddings=True)
register("elt", equivariant_landmark_transformation, second_view=True)
