"""Keypoint heatmaps: Gaussian targets, per-keypoint weights, decoding with sub-pixel refinement, soft-argmax.

Heatmaps live at input_size / stride (paper: 256 -> 64, stride 4, sigma 2 heatmap pixels). Coordinates are
continuous input pixels (pixel i covers [i, i + 1)), so a keypoint at x sits at heatmap position x / stride and the
Gaussian is centred on index x / stride - 0.5.
"""
import torch


def render(kp, size, stride=4, sigma=2.0):
    """Gaussian targets (B, K, h, w), peak 1, from keypoints (B, K, 3) in input pixels; v = 0 gives zeros."""
    h, w = size
    mu = kp[..., :2] / stride - 0.5                                           # (B, K, 2) heatmap index space
    xs = torch.arange(w, device=kp.device, dtype=kp.dtype)
    ys = torch.arange(h, device=kp.device, dtype=kp.dtype)
    gx = torch.exp(-(xs - mu[..., :1]) ** 2 / (2 * sigma ** 2))               # (B, K, w)
    gy = torch.exp(-(ys - mu[..., 1:]) ** 2 / (2 * sigma ** 2))               # (B, K, h)
    hm = gy[..., :, None] * gx[..., None, :]                                  # (B, K, h, w)
    return hm * (kp[..., 2] > 0)[..., None, None].to(hm.dtype)


def weights(kp, visible_only=False):
    """(B, K) loss weights: 1 for labeled keypoints (v > 0, or v == 2 with visible_only), else 0."""
    return ((kp[..., 2] >= 2) if visible_only else (kp[..., 2] > 0)).to(kp.dtype)


def decode(hm, stride=4):
    """Argmax + sub-pixel refinement. hm (B, K, h, w) -> coords (B, K, 2) in input pixels, score (B, K).

    The refinement fits a parabola to the log-heatmap through the argmax and its two neighbours along x and y,
    which is exact for a Gaussian peak (its log is a parabola); offsets are clamped to half a pixel."""
    B, K, h, w = hm.shape
    flat = hm.reshape(B, K, -1)
    score, idx = flat.max(-1)
    iy, ix = torch.div(idx, w, rounding_mode="floor"), idx % w
    logh = torch.log(hm.clamp_min(1e-10))
    pad = torch.nn.functional.pad(logh, (1, 1, 1, 1), mode="replicate").reshape(B, K, -1)
    W = w + 2

    def at(dy, dx):
        return pad.gather(-1, ((iy + 1 + dy) * W + (ix + 1 + dx)).unsqueeze(-1)).squeeze(-1)

    c = at(0, 0)
    off = []
    for a, b in (((0, -1), (0, 1)), ((-1, 0), (1, 0))):
        lo, hi = at(*a), at(*b)
        den = lo - 2 * c + hi
        o = torch.where(den < -1e-6, 0.5 * (lo - hi) / den, torch.zeros_like(c))
        off.append(o.clamp(-0.5, 0.5))
    x = ix.to(hm.dtype) + 0.5 + off[0]
    y = iy.to(hm.dtype) + 0.5 + off[1]
    return torch.stack([x, y], -1) * stride, score


def soft_argmax(hm, stride=4, beta=1.0):
    """Differentiable expected position under softmax(beta * hm) per channel: (B, K, 2) in input pixels."""
    B, K, h, w = hm.shape
    p = torch.softmax(beta * hm.reshape(B, K, -1).float(), -1).reshape(B, K, h, w)
    xs = torch.arange(w, device=hm.device, dtype=p.dtype) + 0.5
    ys = torch.arange(h, device=hm.device, dtype=p.dtype) + 0.5
    x = (p.sum(2) * xs).sum(-1)
    y = (p.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1) * stride
