"""Batched geometric transforms on any device: crops, affine augmentation, and the perspective warps g(., s).

All transforms are 3x3 matrices in *normalised* coordinates ([-1, 1], pixel corners, grid_sample's
align_corners=False), so one matrix warps an image and its lower-resolution heatmaps alike. Keypoints are in
pixels, continuous (pixel i covers [i, i + 1)); `warp_points` converts. A matrix maps input to output positions;
`warp` samples the input at H^-1 of every output pixel. The inverse warp is `warp(y, torch.linalg.inv(H))`.
"""
import math

import torch
import torch.nn.functional as F


def norm_matrix(w, h, device=None, dtype=torch.float32):
    """(3, 3) pixel -> normalised coordinates for an image of width w and height h."""
    return torch.tensor([[2.0 / w, 0, -1], [0, 2.0 / h, -1], [0, 0, 1]], device=device, dtype=dtype)


def pixel_to_norm(T, in_size, out_size):
    """A pixel-space transform T (.., 3, 3) from an (w, h) image to an (w', h') one, as a normalised matrix."""
    n_in = norm_matrix(*in_size, device=T.device, dtype=T.dtype)
    n_out = norm_matrix(*out_size, device=T.device, dtype=T.dtype)
    return n_out @ T @ torch.linalg.inv(n_in)


def apply(H, pts):
    """Apply (B, 3, 3) homographies to (B, N, 2) points."""
    p = torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ H.transpose(-1, -2)
    return p[..., :2] / p[..., 2:].clamp_min(1e-8)


def warp(x, H, out_size=None, mode="bilinear", padding_mode="zeros"):
    """Warp (B, C, h, w) by normalised homographies H (B, 3, 3); out_size (h', w') defaults to (h, w)."""
    B, _, h, w = x.shape
    oh, ow = out_size or (h, w)
    ys = (torch.arange(oh, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / oh) - 1
    xs = (torch.arange(ow, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / ow) - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(B, -1, -1)            # (B, oh*ow, 2)
    src = apply(torch.linalg.inv(H.float()), grid).reshape(B, oh, ow, 2)
    return F.grid_sample(x, src.to(x.dtype), mode=mode, padding_mode=padding_mode, align_corners=False)


def warp_points(kp, H, in_size, out_size=None):
    """Transform keypoints (B, K, 3) (x, y, v pixels of an (w, h) image) by normalised H.

    Points that land outside the output image, or had v = 0, come back with v = 0."""
    w, h = in_size
    ow, oh = out_size or in_size
    n = kp[..., :2] * kp.new_tensor([2.0 / w, 2.0 / h]) - 1
    q = (apply(H.to(kp.dtype), n) + 1) * kp.new_tensor([ow / 2.0, oh / 2.0])
    inside = (q[..., 0] >= 0) & (q[..., 0] < ow) & (q[..., 1] >= 0) & (q[..., 1] < oh)
    v = torch.where(inside & (kp[..., 2] > 0), kp[..., 2], torch.zeros_like(kp[..., 2]))
    q = torch.where(v[..., None] > 0, q, torch.zeros_like(q))
    return torch.cat([q, v[..., None]], -1)


def _solve_homography(src, dst):
    """(B, 3, 3) H with H src_i = dst_i for four point pairs (B, 4, 2) (direct linear transform)."""
    B = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    z, o = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, o, z, z, z, -u * x, -u * y], -1)
    rows_v = torch.stack([z, z, z, x, y, o, -v * x, -v * y], -1)
    A = torch.cat([rows_u, rows_v], 1)                                       # (B, 8, 8)
    b = torch.cat([u, v], 1)                                                 # (B, 8)
    h = torch.linalg.solve(A, b)
    return torch.cat([h, torch.ones(B, 1, device=h.device, dtype=h.dtype)], 1).reshape(B, 3, 3)


def _similarity(angle, scale, tx, ty):
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, -s, tx], -1), torch.stack([s, c, ty], -1), torch.stack([z, z, o], -1)], 1)


def _u(B, lo, hi, g, device):
    return torch.rand(B, generator=g, device=device) * (hi - lo) + lo


def random_homography(B, corner=0.12, rotation=20.0, scale=(0.85, 1.1), translate=0.05, generator=None,
                      device="cpu"):
    """Random perspective warps g(., s) with bounded distortion, after Moskvyak & Maire (2017).

    A similarity (rotation in degrees, scale, translation as a fraction of the side) moves the image corners,
    then each corner is displaced independently by at most `corner` of the side; H maps the original corners to
    the moved ones. Bounded displacements keep the quadrilateral convex: no extreme warps."""
    g = generator
    S = _similarity(_u(B, -1, 1, g, device) * math.radians(rotation), _u(B, *scale, g, device),
                    _u(B, -1, 1, g, device) * 2 * translate, _u(B, -1, 1, g, device) * 2 * translate)
    corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]], device=device).expand(B, 4, 2)
    moved = apply(S, corners) + (torch.rand(B, 4, 2, generator=g, device=device) * 2 - 1) * 2 * corner
    return _solve_homography(corners.contiguous(), moved)


def random_affine(B, rotation=30.0, scale=(0.75, 1.25), translate=0.05, flip=0.5, generator=None, device="cpu"):
    """Standard keypoint augmentation: (B, 3, 3) normalised matrices and the (B,) bool flip mask.

    A flipped sample must also swap its left/right keypoints (`flip_keypoints`)."""
    g = generator
    S = _similarity(_u(B, -1, 1, g, device) * math.radians(rotation), _u(B, *scale, g, device),
                    _u(B, -1, 1, g, device) * 2 * translate, _u(B, -1, 1, g, device) * 2 * translate)
    flipped = torch.rand(B, generator=g, device=device) < flip
    Fm = torch.eye(3, device=device).repeat(B, 1, 1)
    Fm[:, 0, 0] = torch.where(flipped, -1.0, 1.0)
    return S @ Fm, flipped


def flip_keypoints(t, flipped, perm):
    """Swap left/right channels (dim 1) of keypoints (B, K, ..) or heatmaps (B, K, h, w) where `flipped`."""
    perm = torch.as_tensor(perm, device=t.device)
    return torch.where(flipped.view(-1, *([1] * (t.dim() - 1))), t[:, perm], t)


def crop_matrix(box, out_size, pad=1.25):
    """(3, 3) pixel transform taking a square of side pad * max(w, h) centred on box (x, y, w, h) to out_size."""
    x, y, w, h = box
    side = pad * max(w, h)
    s = out_size / side
    cx, cy = x + w / 2, y + h / 2
    return torch.tensor([[s, 0, out_size / 2 - s * cx], [0, s, out_size / 2 - s * cy], [0, 0, 1]],
                        dtype=torch.float64)
