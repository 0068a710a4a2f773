"""Coordinates and resampling on any device: 3x3 matrices in normalised coordinates, warping images and keypoints
through them, and the crop matrix. The crops (crops.py) and every warp of the method (kpsemi/method/warp.py) use
these.

All transforms are 3x3 matrices in *normalised* coordinates ([-1, 1], pixel corners, grid_sample's
align_corners=False), so one matrix warps an image and its lower-resolution heatmaps alike. Keypoints are in
pixels, continuous (pixel i covers [i, i + 1)); `warp_points` converts. A matrix maps input to output positions;
`warp` samples the input at H^-1 of every output pixel. The inverse warp is `warp(y, torch.linalg.inv(H))`.
"""
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


def crop_matrix(box, out_size, pad=1.25):
    """(3, 3) pixel transform taking a square of side pad * max(w, h) centred on box (x, y, w, h) to out_size."""
    x, y, w, h = box
    side = pad * max(w, h)
    s = out_size / side
    cx, cy = x + w / 2, y + h / 2
    return torch.tensor([[s, 0, out_size / 2 - s * cx], [0, s, out_size / 2 - s * cy], [0, 0, 1]],
                        dtype=torch.float64)
