"""Where does a classifier look? The two saliency cues of weakly supervised keypoints (Shan, seed 003).

- **Occlusion sensitivity** (Zeiler & Fergus 2014), the coarse scale: slide an occluder b over the image x,
  replace its pixels by a fill g (h_g(x, b)) and record how much the predicted class c loses,
  d(x, b) = max(f_c(x) - f_c(h_g(x, b)), 0) with f the softmax probabilities. All occluded copies of all images
  go through the network in large batches.
- **Guided backpropagation** (Springenberg et al. 2015), the fine scale: the gradient of the class score with
  respect to the input pixels, where every ReLU's backward pass lets through only gradients that are positive
  *and* whose forward input was positive: R^l = (f^l > 0) * (R^{l+1} > 0) * R^{l+1}.

Both are written out here because they are the lesson; tests/test_weak.py checks them against captum's
`Occlusion` and `GuidedBackprop`. The model is any nn.Module mapping images (B, 3, S, S) to logits (B, C);
guided backprop needs its ReLUs to be `nn.ReLU` modules (true of torchvision's VGG and ResNet).
"""
import math
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

from kpsemi.errors import UserError


# ---- occlusion sensitivity ----------------------------------------------------------------------------------------
def window_offsets(size, patch, stride):
    """Start offsets of the occluder along one side: 0, stride, 2 stride, ... up to the first window that
    reaches the border (it may stick out and is clipped). This is how captum's Occlusion places its windows."""
    if not 0 < patch <= size or stride < 1:
        raise UserError(f"occluder patch {patch} / stride {stride} do not fit a {size} px image "
                        "(need 0 < patch <= image side, stride >= 1)")
    return [i * stride for i in range(math.ceil((size - patch) / stride) + 1)]


def occluder_masks(size, patch, stride, device="cpu"):
    """(P, S, S) bool masks, one per occluder position, row-major over the (n, n) grid of positions."""
    ar = torch.arange(size, device=device)
    m = torch.stack([(ar >= o) & (ar < o + patch) for o in window_offsets(size, patch, stride)])   # (n, S)
    return (m[:, None, :, None] & m[None, :, None, :]).reshape(-1, size, size)                     # (n*n, S, S)


@torch.no_grad()
def occlusion(model, images, target=None, patch=16, stride=8, fill="random", clamp=True, batch_size=256,
              generator=None):
    """Occlusion sensitivity of `images` (B, 3, S, S) in [0, 1] for class `target` (B,) (default: predicted).

    fill: "random" - every occluder pixel gets a uniform random colour (the seed's choice: a plain patch makes
    edges the network may react to), a number (a grey patch), or a tensor broadcastable to (B, 3, S, S) (a
    baseline image, as captum's `baselines`). clamp: keep only drops, max(f_c(x) - f_c(h_g(x, b)), 0); with
    clamp=False and a fixed fill the result equals captum's Occlusion on softmax outputs.

    Returns (maps (B, S, S): every pixel averages the drops of the windows covering it, drops (B, n, n) per
    position, target (B,)). The model runs in eval mode (BatchNorm must not see the copies as a batch)."""
    was = model.training
    model.eval()
    try:
        return _occlusion(model, images, target, patch, stride, fill, clamp, batch_size, generator)
    finally:
        model.train(was)


def _occlusion(model, images, target, patch, stride, fill, clamp, batch_size, generator):
    B, _, S, _ = images.shape
    masks = occluder_masks(S, patch, stride, images.device)                       # (P, S, S)
    P, n = masks.shape[0], int(math.isqrt(masks.shape[0]))
    p0 = model(images).softmax(1)                                                 # (B, C)
    target = p0.argmax(1) if target is None else torch.as_tensor(target, device=images.device).expand(B)
    base = p0.gather(1, target[:, None])[:, 0]                                    # (B,)
    if not isinstance(fill, str):
        fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device).expand(B, 3, S, S)
    elif fill != "random":
        raise UserError(f"occlusion fill {fill!r}: use 'random', a number or a baseline image tensor")
    drops = torch.empty(B * P, device=images.device)
    for s in range(0, B * P, batch_size):                                         # pairs (image, position)
        pair = torch.arange(s, min(s + batch_size, B * P), device=images.device)
        b, p = pair // P, pair % P
        m = masks[p][:, None]                                                     # (n_pair, 1, S, S)
        if isinstance(fill, str):
            g = torch.rand(len(pair), 3, S, S, generator=generator, device=images.device)
        else:
            g = fill[b]
        prob = model(torch.where(m, g, images[b])).softmax(1)                     # (n_pair, C)
        drops[s:s + len(pair)] = base[b] - prob.gather(1, target[b][:, None])[:, 0]
    drops = drops.view(B, P)
    if clamp:
        drops = drops.clamp_min(0)
    mf = masks.flatten(1).float()                                                 # (P, S*S)
    maps = (drops @ mf) / mf.sum(0).clamp_min(1)                                  # (B, S*S) window average
    return maps.view(B, S, S), drops.view(B, n, n), target


# ---- guided backpropagation ---------------------------------------------------------------------------------------
class _GuidedReLUFunction(torch.autograd.Function):
    """max(x, 0) forward; backward passes a gradient only where the input was positive and the gradient is."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (grad > 0)).to(grad.dtype)


class GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFunction.apply(x)


@contextmanager
def guided_relus(model):
    """Temporarily swap every nn.ReLU module of `model` for a GuidedReLU (a module used twice, as in
    torchvision's ResNet blocks, is swapped once and guides both uses). Yields the number swapped."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent._modules.items()
             if isinstance(child, nn.ReLU)]          # _modules, not named_children(): that skips aliases
    if not found:
        raise UserError(f"{type(model).__name__} has no nn.ReLU modules: guided backpropagation rewrites "
                        "their backward pass (functional relu calls are not seen)")
    for parent, name, _ in found:
        setattr(parent, name, GuidedReLU())
    try:
        yield len(found)
    finally:
        for parent, name, child in found:
            setattr(parent, name, child)


def guided_backprop(model, images, target=None, score="logit"):
    """Guided-backprop gradients (B, 3, S, S) of class `target` (default: predicted) w.r.t. `images`; returns
    (gradients, target (B,)).

    score: "logit" (the class score before the softmax, as Springenberg et al. and captum) or "prob" (the softmax
    probability: it also pushes the other classes down, but vanishes for very confident predictions).
    The model runs in eval mode (BatchNorm statistics fixed, so the samples of a batch are independent)."""
    return _class_gradient(model, images, target, score, guided=True)


def input_gradient(model, images, target=None, score="logit"):
    """The plain gradient of the class score w.r.t. the input (Simonyan et al.'s saliency), for comparison."""
    return _class_gradient(model, images, target, score, guided=False)


def _class_gradient(model, images, target, score, guided):
    if score not in ("logit", "prob"):
        raise UserError(f"gradient score {score!r}: use 'logit' or 'prob'")
    was = model.training
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    try:
        with (guided_relus(model) if guided else nullcontext()), torch.enable_grad():
            out = model(x)                                                        # (B, C)
            if score == "prob":
                out = out.softmax(1)
            if target is None:
                target = out.argmax(1)
            target = torch.as_tensor(target, device=x.device).expand(x.shape[0])
            (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
    finally:
        model.train(was)
    return grad, target


def gradient_map(grad):
    """(B, 3, S, S) input gradients -> (B, S, S) saliency: the largest |gradient| over the colour channels."""
    return grad.abs().amax(1)


def box_filter(maps, k=3):
    """Mean over k x k neighbourhoods (odd k; 1: unchanged) of maps (B, H, W); borders average what is there."""
    if k <= 1:
        return maps
    return F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]


def normalise(maps, q=1.0):
    """Scale each map (B, H, W) to [0, 1] by its `q`-quantile (1.0: its maximum); values above clip to 1."""
    top = torch.quantile(maps.flatten(1).float(), q, dim=1) if q < 1 else maps.flatten(1).amax(1)
    return (maps / top.clamp_min(1e-12).view(-1, 1, 1)).clamp(0, 1)
