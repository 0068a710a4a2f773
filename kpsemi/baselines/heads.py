"""The other rows of the paper's Table 1 and Honari's Seq-MT, as extra heads + losses on the same KLN.

- **Gen** (Jakab et al. 2018, injected into our pipeline as the paper did): the heatmaps of an image x become a
  keypoint bottleneck — soft-argmax coordinates rendered as Gaussian maps — which, with the appearance of a
  geometrically transformed copy x' = g(x, s), conditions a decoder that must reconstruct x. Geometry can only come
  from the keypoints, so they learn to follow the object. No ImageNet network is available offline for a
  perceptual loss, so the reconstruction loss is L1 on pixels + L1 on image gradients (edges) at two scales.
- **Seq-MT** (Honari et al. 2018): landmarks by soft-argmax feed an attribute classifier (the embedded set's
  per-image attributes); the attribute loss flows back into the landmark network on every image that has
  attributes, also those without landmarks.
- **Landmark ELT** (Honari et al.): || T(L(x)) - L(T(x)) ||^2 on soft-argmax coordinates (Seq-MT's L+ELT rows);
  the heatmap form the Moskvyak paper compares with is `losses.equivariant_landmark_transformation`.

The losses are registered in losses.py like every other; `heads(names, ...)` builds the modules the trainer attaches
to the model as `model.extras`. PL (pseudo-labels) is a two-stage method of its own: see pseudo.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from kpsemi.method import heatmaps, warp

FLIP_ATTRIBUTES = ("facing_left", "facing_right")   # attributes that invert under a horizontal flip
SOFTARGMAX_BETA = 20.0


class AppearanceDecoder(nn.Module):
    """Encode x' (B, 3, S, S) to appearance features at S/4, concatenate keypoint maps (B, K, S/4, S/4), decode
    back to an image (B, 3, S, S) in [0, 1]."""

    def __init__(self, num_keypoints, width=32):
        super().__init__()

        def block(i, o, stride=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.enc = nn.Sequential(block(3, width, 2), block(width, width, 2), block(width, width))
        self.dec = nn.Sequential(block(width + num_keypoints, width), block(width, width),
                                 nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 block(width, width // 2),
                                 nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 block(width // 2, width // 2), nn.Conv2d(width // 2, 3, 3, 1, 1))

    def forward(self, x_app, kp_maps):
        a = self.enc(x_app)                                                     # (B, W, S/4, S/4)
        kp_maps = F.interpolate(kp_maps, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.dec(torch.cat([a, kp_maps], 1)))             # (B, 3, S, S)


class AttributeHead(nn.Module):
    """Seq-MT's second task: attributes (A logits) from the K landmarks alone (normalised to [-1, 1])."""

    def __init__(self, num_keypoints, num_attributes, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_keypoints, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, num_attributes))

    def forward(self, coords_norm):                                            # (B, K, 2) -> (B, A)
        return self.net(coords_norm.flatten(1))


def heads(names, num_keypoints, num_attributes):
    """The extra modules the losses `names` need (empty for the paper's own method)."""
    m = nn.ModuleDict()
    if "gen" in names:
        m["gen"] = AppearanceDecoder(num_keypoints)
    if "attr" in names:
        if num_attributes == 0:
            raise ValueError("the attribute loss needs a dataset with per-image attributes")
        m["attr"] = AttributeHead(num_keypoints, num_attributes)
    return m


def extra_outputs(model, out, x, x2, attributes, flipped, meta, stride, sigma):
    """Add what the gen and attr heads need to the step's outputs dict (called by train.forward_views)."""
    S = x.shape[-1]
    need = set(model.extras.keys())
    if need:
        out["coords"] = heatmaps.soft_argmax(out["heatmaps"], stride, SOFTARGMAX_BETA)          # (B, K, 2)
    if "gen" in need:
        kp = torch.cat([out["coords"], torch.full_like(out["coords"][..., :1], 2.0)], -1)
        maps = heatmaps.render(kp, out["heatmaps"].shape[-2:], stride, sigma)                  # (B, K, h, w)
        out["recon"], out["image"] = model.extras["gen"](x2, maps), x
    if "attr" in need:
        a = attributes.clone()
        for i, name in enumerate(meta.attributes):
            if name in FLIP_ATTRIBUTES:
                a[:, i] = torch.where(flipped & (a[:, i] >= 0), 1 - a[:, i], a[:, i])
        out["attr_logits"] = model.extras["attr"](out["coords"] / S * 2 - 1)
        out["attributes"] = a
    return out


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


def landmark_elt(out):
    """Honari's ELT on coordinates: || T(L(x)) - L(T(x)) ||^2 / S^2 over landmarks T keeps inside the image."""
    S = out["image_size"]
    c1 = heatmaps.soft_argmax(out["heatmaps"], out["stride"], SOFTARGMAX_BETA)
    c2 = heatmaps.soft_argmax(out["heatmaps_g"], out["stride"], SOFTARGMAX_BETA)
    moved = warp.warp_points(torch.cat([c1, torch.full_like(c1[..., :1], 2.0)], -1), out["H"], (S, S))
    keep = moved[..., 2] > 0
    if not keep.any():
        return c1.sum() * 0.0
    return (((moved[..., :2] - c2) / S) ** 2).sum(-1)[keep].mean()

