"""The random transforms of training: the perspective warps g(., s) of TE, TI and ELT, and the standard keypoint
augmentation (rotation, scale, translation, flip), as batched 3x3 matrices in normalised coordinates.

The matrices follow the conventions of kpsemi/data/geometry.py: `geometry.warp(x, H)` applies one to images or
heatmaps, `geometry.warp_points(kp, H, size)` to keypoints.
"""
import math

import torch

from kpsemi.data.geometry import apply


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
