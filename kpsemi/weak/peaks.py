"""Points from maps: max-pool non-maximum suppression and Foerstner sub-pixel refinement (batched, any device).

Coordinates are continuous pixels as everywhere in kpsemi: pixel (i, j) covers [j, j + 1) x [i, i + 1), so the
peak at row i, column j is the point (j + 0.5, i + 0.5).

**NMS** is the max-pool kind: a pixel is a peak when it equals the maximum of its (2r + 1)^2 window and the
window is not flat (flat regions have no peak), one pooling over the whole batch. Ties on plateaus are then
thinned by torchvision's greedy box NMS (torchvision.ops.batched_nms) on small boxes around the candidates.

**Foerstner** (Foerstner & Guelch 1987): the point closest, in least squares, to all lines through the window's
pixels x_i with normals along the image gradient g_i = (I_x, I_y) - for a corner, the edges meet there:

    A = sum_w g g^T = [[sum I_x^2, sum I_x I_y], [sum I_x I_y, sum I_y^2]],   b = sum_w g g^T x_i,   x^ = A^-1 b

mode="blob" rotates the gradients by 90 degrees first, so the lines run *along* the gradients and meet at the
centre of a round blob. A is singular on a straight edge or in a flat window; Foerstner's roundness
q = 4 det A / tr(A)^2 (1: isotropic, 0: an edge) guards it: below `min_roundness`, or when x^ leaves the window,
the pixel position is kept.
"""
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from kpsemi.errors import UserError


def nms(score, radius=2, max_peaks=20):
    """Peaks of maps `score` (B, H, W): (xy (B, M, 2) pixel centres, value (B, M), valid (B, M) bool), sorted by
    value, best first; M = min(max_peaks, H * W) with invalid (padding) entries at the end.

    Max-pool NMS keeps every pixel that equals its window's maximum, so a plateau (equal values, e.g. the
    block-constant occlusion map) leaves several tied peaks; those are thinned by torchvision's greedy box NMS
    on boxes of side r + 1/2 around each candidate (IoU > 0 <=> both |dx| and |dy| <= r)."""
    if radius < 1 or max_peaks < 1:
        raise UserError(f"nms radius {radius} and max_peaks {max_peaks} must be >= 1")
    B, H, W = score.shape
    k = 2 * radius + 1
    hi = F.max_pool2d(score[:, None], k, stride=1, padding=radius)[:, 0]             # (B, H, W)
    lo = -F.max_pool2d(-score[:, None], k, stride=1, padding=radius)[:, 0]
    b, iy, ix = torch.nonzero((score == hi) & (hi > lo), as_tuple=True)              # candidates (n,)
    val = score[b, iy, ix]
    pts = torch.stack([ix, iy], 1).to(score.dtype) + 0.5                             # (n, 2)
    half = (radius + 0.5) / 2
    kept = batched_nms(torch.cat([pts - half, pts + half], 1).float(), val.float(), b, 0.0)  # best first
    M = min(max_peaks, H * W)
    xy = torch.zeros(B, M, 2, dtype=score.dtype, device=score.device)
    value = torch.full((B, M), -torch.inf, dtype=score.dtype, device=score.device)
    kb = b[kept]
    rank = torch.zeros_like(kb)                                                      # position within its image
    if len(kb):
        order = torch.argsort(kb, stable=True)                                       # group by image, keep order
        first = torch.searchsorted(kb[order], kb[order])
        rank[order] = torch.arange(len(kb), device=kb.device) - first
    sel = rank < M
    xy[kb[sel], rank[sel]] = pts[kept][sel]
    value[kb[sel], rank[sel]] = val[kept][sel]
    return xy, value, torch.isfinite(value)


def keep_top(valid, fraction):
    """(B, M) mask of the best ceil(fraction * n_valid) peaks of each row (rows sorted best first, as nms gives)."""
    if not 0 < fraction <= 1:
        raise UserError(f"keep fraction must be in (0, 1], got {fraction}")
    n = torch.ceil(valid.sum(1, keepdim=True) * fraction)                            # (B, 1)
    rank = torch.arange(valid.shape[1], device=valid.device)[None]
    return valid & (rank < n)


def image_gradients(gray):
    """Sobel gradients (I_x, I_y), each (B, H, W), of grey images (B, H, W) (borders replicated)."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=gray.dtype, device=gray.device) / 8
    k = torch.stack([kx, kx.T])[:, None]                                              # (2, 1, 3, 3)
    g = F.conv2d(F.pad(gray[:, None], (1, 1, 1, 1), mode="replicate"), k)            # (B, 2, H, W)
    return g[:, 0], g[:, 1]


def _forstner_step(ix, iy, xy, radius):
    """One least-squares solve per point over the window around floor(xy): (estimate (B, M, 2), roundness q,
    trace of A), in float64."""
    B, H, W = ix.shape
    M = xy.shape[1]
    d = torch.arange(-radius, radius + 1, device=xy.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")                                      # (w, w)
    c = xy.floor().long()                                                             # (B, M, 2) pixel index
    px = (c[..., 0, None] + dx.flatten()).clamp(0, W - 1)                             # (B, M, w*w)
    py = (c[..., 1, None] + dy.flatten()).clamp(0, H - 1)
    idx = (py * W + px).flatten(1)                                                    # (B, M*w*w)
    gx = ix.flatten(1).gather(1, idx).view(B, M, -1).double()
    gy = iy.flatten(1).gather(1, idx).view(B, M, -1).double()
    x, y = px.double() + 0.5, py.double() + 0.5                                       # pixel centres
    a11, a12, a22 = (gx * gx).sum(-1), (gx * gy).sum(-1), (gy * gy).sum(-1)           # (B, M)
    b1 = (gx * gx * x + gx * gy * y).sum(-1)
    b2 = (gx * gy * x + gy * gy * y).sum(-1)
    det, tr = a11 * a22 - a12 * a12, a11 + a22
    q = 4 * det / (tr * tr).clamp_min(1e-30)
    safe = torch.where(det.abs() > 1e-30, det, torch.ones_like(det))
    est = torch.stack([(a22 * b1 - a12 * b2) / safe, (a11 * b2 - a12 * b1) / safe], -1)
    return est, q, tr


def forstner(gray, xy, valid=None, radius=2, mode="corner", min_roundness=0.1, iterations=3):
    """Refine points xy (B, M, 2) on grey images (B, H, W) by the Foerstner operator over (2r + 1)^2 windows,
    re-centring the window on the estimate `iterations` times (a window cut off on one side biases the
    estimate towards its centre). A point whose estimate fails the guards keeps its input position.

    Returns (refined xy (B, M, 2), refined (B, M) bool: where the estimate was accepted)."""
    if mode not in ("corner", "blob"):
        raise UserError(f"forstner mode {mode!r}: use 'corner' or 'blob'")
    B, M = xy.shape[:2]
    ok = torch.ones(B, M, dtype=torch.bool, device=xy.device) if valid is None else valid.clone()
    ix, iy = image_gradients(gray.float())
    if mode == "blob":
        ix, iy = -iy, ix
    cur = xy.double()
    for _ in range(max(1, iterations)):
        est, q, tr = _forstner_step(ix, iy, cur.to(xy.dtype), radius)
        good = ok & (tr > 1e-12) & (q >= min_roundness) & ((est - xy.double()).abs() <= radius + 0.5).all(-1)
        ok = good
        cur = torch.where(ok[..., None], est, xy.double())
    return cur.to(xy.dtype), ok
