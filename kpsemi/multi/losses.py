"""SemiMultiPose losses (Blau et al., seed 002): targets from multi-instance keypoints, focal/box/offset losses and
the fusion loss, as entries of the method's loss registry type (kpsemi/method/losses.py).

Grid convention: output cell (i, j) of a stride-s map covers input pixels [j s, (j + 1) s) x [i s, (i + 1) s); in
*cell units* a keypoint at input x sits at u = x / s and the cell centre is j + 0.5.

    G (B, K, h, w)   B1 target: a binary (2r+1)-cell square window at every instance's keypoint          (Eq. 3)
    U (B, 1, h, w)   B2 target: ones inside every instance's keypoint-enclosing box (+ `margin` cells)     (Eq. 5)
    P (B, K, 2, h, w) B3 target: from each box cell to keypoint k of the instance that owns the cell, in units of
                     `offset_scale` cells; the owner is the instance (among those whose box holds the cell) whose
                     skeleton passes closest to the cell centre, so every box cell regresses one whole pose
    Pm (B, K, h, w)  where P is defined: inside a box, and keypoint k of the owner is labeled             (Eq. 6)

Losses take the step's outputs dict `out` (kp / box / off logits + the targets above + `labeled`) and `cfg`
(gamma, kappa, delta, window, offset_scale):  L = L_a + L_b + L_d + alpha L_fl + beta L_fu   (Eq. 10). `registry(cfg)`
binds a config into entries of the method's registry type, `fn(out) -> scalar`.
"""
from functools import partial

import torch
import torch.nn.functional as F

from kpsemi.method.losses import Loss


def focal(logits, target, gamma=2.0, kappa=0.25):
    """Sum of the (confidence-weighted) focal loss over all elements (Eq. 4; Eq. 9's FocalLoss_v for soft targets):
    -t kappa (1 - p)^gamma log p - (1 - t) (1 - kappa) p^gamma log(1 - p), p = sigmoid(logits)."""
    p = torch.sigmoid(logits)
    pos = -target * kappa * (1 - p) ** gamma * F.logsigmoid(logits)
    neg = -(1 - target) * (1 - kappa) * p ** gamma * F.logsigmoid(-logits)
    return (pos + neg).sum()


def coverage(c, u, half):
    """Length of [c, c + 1) ∩ [u - half, u + half]: the anti-aliased 1-D window, piecewise linear in u."""
    return (torch.minimum(c + 1, u + half) - torch.maximum(c, u - half)).clamp(0, 1)


def targets(kp, hw, stride, window=1, margin=0.5, skeleton=(), offset_scale=4.0):
    """G, U, P, Pm (see the module docstring) from keypoints (B, M, K, 3) in input pixels."""
    B, M, K, _ = kp.shape
    h, w = hw
    dev = kp.device
    lab = kp[..., 2] > 0                                                          # (B, M, K)
    u = kp[..., :2] / stride                                                      # (B, M, K, 2) cell units
    cx = torch.arange(w, device=dev, dtype=u.dtype) + 0.5
    cy = torch.arange(h, device=dev, dtype=u.dtype) + 0.5
    half = window + 0.5
    inx = (cx - u[..., :1]).abs() <= half                                         # (B, M, K, w)
    iny = (cy - u[..., 1:]).abs() <= half                                         # (B, M, K, h)
    G = (iny[..., :, None] & inx[..., None, :] & lab[..., None, None]).any(1).float()           # (B, K, h, w)
    big = torch.full_like(u[..., 0], 1e9)
    lo = torch.stack([torch.where(lab, u[..., i], big).amin(-1) for i in (0, 1)], -1) - margin    # (B, M, 2)
    hi = torch.stack([torch.where(lab, u[..., i], -big).amax(-1) for i in (0, 1)], -1) + margin
    has = lab.any(-1)                                                             # (B, M)
    bx = (cx >= lo[..., :1]) & (cx <= hi[..., :1])                                # (B, M, w)
    by = (cy >= lo[..., 1:]) & (cy <= hi[..., 1:])                                # (B, M, h)
    inbox = by[..., :, None] & bx[..., None, :] & has[..., None, None]            # (B, M, h, w)
    U = inbox.any(1, keepdim=True).float()                                        # (B, 1, h, w)
    # owner of each cell: the instance whose skeleton (segments between labeled keypoints, and the points) is nearest
    edges = [(a, b) for a, b in skeleton] + [(k, k) for k in range(K)]
    ea = torch.tensor([a for a, _ in edges], device=dev)
    eb = torch.tensor([b for _, b in edges], device=dev)
    pa, pb = u[:, :, ea], u[:, :, eb]                                             # (B, M, E, 2)
    ok = lab[:, :, ea] & lab[:, :, eb]                                            # (B, M, E)
    grid = torch.stack(torch.meshgrid(cy, cx, indexing="ij")[::-1], -1).reshape(-1, 2)       # (h*w, 2) as (x, y)
    d = pb - pa
    t = (((grid[:, None, None, None] - pa) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    dist = (grid[:, None, None, None] - (pa + t[..., None] * d)).norm(dim=-1)    # (h*w, B, M, E)
    dist = torch.where(ok, dist, torch.full_like(dist, 1e9)).amin(-1).permute(1, 2, 0).reshape(B, M, h, w)
    dist = torch.where(inbox, dist, torch.full_like(dist, 1e10))
    owner = dist.argmin(1)                                                        # (B, h, w)
    idx = owner[:, None, :, :, None].expand(B, 1, h, w, K)                        # gather instance per cell
    uo = torch.stack([u[..., i][:, :, None, None, :].expand(B, M, h, w, K).gather(1, idx)[:, 0] for i in (0, 1)], 1)
    labo = lab[:, :, None, None, :].expand(B, M, h, w, K).gather(1, idx)[:, 0]    # (B, h, w, K)
    centre = torch.stack(torch.meshgrid(cy, cx, indexing="ij")[::-1], 0)          # (2, h, w) as (x, y)
    P = (uo.permute(0, 4, 1, 2, 3) - centre) / offset_scale                      # (B, K, 2, h, w)
    Pm = U * labo.permute(0, 3, 1, 2).float()                                     # (B, K, h, w)
    return G, U, P * Pm[:, :, None], Pm


def pseudo_targets(off, box_logits, delta=0.05, window=1, offset_scale=4.0):
    """G~ (B, K, h, w) of Eq. 9 from B2 and B3: every cell s with v = sigmoid(B2)(s) > delta proposes keypoint k at
    y_k(s) = s + D_k(s) (Eq. 8); G~ = max over proposals of v(s) x the anti-aliased window at y_k(s).

    Differentiable in D (the window's coverage is piecewise linear in y), not in B2: v and s are detached."""
    B, K, _, h, w = off.shape
    v = torch.sigmoid(box_logits.detach()[:, 0])                                  # (B, h, w)
    b, i, j = (v > delta).nonzero(as_tuple=True)                                  # (S,)
    G = off.new_zeros(B * K * h * w)
    if b.numel() == 0:
        return G.view(B, K, h, w) + 0 * off.sum()                                 # keeps the graph (zero grad)
    cell = torch.stack([j, i], -1).to(off.dtype) + 0.5                            # (S, 2) (x, y)
    y = cell[:, None] + off[b, :, :, i, j] * offset_scale                         # (S, K, 2) Eq. 8
    R = window + 1
    o = torch.arange(-R, R + 1, device=off.device)
    oy, ox = torch.meshgrid(o, o, indexing="ij")
    q = y.detach().floor()[:, :, None] + torch.stack([ox, oy], -1).reshape(1, 1, -1, 2).to(off.dtype)  # (S, K, N, 2)
    cov = coverage(q[..., 0], y[:, :, None, 0], window + 0.5) * coverage(q[..., 1], y[:, :, None, 1], window + 0.5)
    val = v[b, i, j][:, None, None] * cov                                         # (S, K, N)
    qx, qy = q[..., 0].long(), q[..., 1].long()
    inside = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
    k = torch.arange(K, device=off.device)[None, :, None]
    flat = ((b[:, None, None] * K + k) * h + qy) * w + qx
    G = G.scatter_reduce(0, flat[inside], val[inside], reduce="amax", include_self=True)
    return G.view(B, K, h, w)


# ---- the registry ------------------------------------------------------------------------------------------------
def _labeled_focal(out, cfg, head, target):
    """Focal loss of the logits out[head] against out[target] on labeled frames, per positive target cell."""
    lab = out["labeled"]
    if not lab.any():
        return out[head].sum() * 0.0
    t = out[target][lab]
    return focal(out[head][lab], t, cfg.gamma, cfg.kappa) / t.sum().clamp_min(1.0)


def keypoint_focal(out, cfg):
    """L_a (Eq. 3): focal loss of B1 against G on labeled frames, normalised by the number of positive cells."""
    return _labeled_focal(out, cfg, "kp", "G")


def box_focal(out, cfg):
    """L_b (Eq. 5): focal loss of B2 against the box map U, normalised by the number of box cells."""
    return _labeled_focal(out, cfg, "box", "U")


def offset_mse(out, cfg):
    """L_d (Eq. 6): MSE(D * U, P * U) averaged over the cells and keypoints where the target is defined."""
    lab = out["labeled"]
    m = out["Pm"][lab][:, :, None]                                                # (b, K, 1, h, w)
    err = (out["off"][lab] - out["P"][lab]) ** 2 * m
    return err.sum() / (2 * m.sum()).clamp_min(1.0)


def _fusion(out, cfg, sel):
    if not sel.any():
        return out["kp"].sum() * 0.0
    Gt = pseudo_targets(out["off"][sel], out["box"][sel], cfg.delta, cfg.window, cfg.offset_scale)
    return focal(out["kp"][sel], Gt, cfg.gamma, cfg.kappa) / Gt.detach().sum().clamp_min(1.0)


def fusion_labeled(out, cfg):
    """L_fl: the fusion loss (Eq. 9) on labeled frames, pseudo keypoints from B2 + B3 as targets for B1."""
    return _fusion(out, cfg, out["labeled"])


def fusion_unlabeled(out, cfg):
    """L_fu: the same on unlabeled frames, the only term that sees them."""
    return _fusion(out, cfg, ~out["labeled"])


def registry(cfg):
    """The five losses of a config as entries of the method's loss registry type (kpsemi/method/losses.py): each
    `fn(out) -> scalar`, the config's gamma, kappa, delta, window and offset_scale bound in; the trainer sums them
    with `losses.total(out, names, weights, registry(cfg))`."""
    return {n: Loss(partial(fn, cfg=cfg)) for n, fn in (("kp", keypoint_focal), ("box", box_focal),
                                                        ("off", offset_mse), ("fl", fusion_labeled),
                                                        ("fu", fusion_unlabeled))}
