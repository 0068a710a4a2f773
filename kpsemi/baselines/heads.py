"""The extra heads of the baselines on the same KLN, and the outputs they add to a training step.

- **Gen** (Jakab et al. 2018): `AppearanceDecoder` reconstructs x from the appearance of x' = g(x, s) and the
  keypoint bottleneck of x (soft-argmax coordinates rendered as Gaussian maps).
- **Seq-MT** (Honari et al. 2018): `AttributeHead` predicts the per-image attributes from the landmarks alone.

`gen_outputs` / `attr_outputs` are the registry hooks (kpsemi/method/losses.py): they add recon/image and
attr_logits/attributes (and the shared soft-argmax coords) to the step's outputs dict; the losses are in losses.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from kpsemi.method import heatmaps

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


def decoder(num_keypoints, num_attributes):
    """Gen's head."""
    return AppearanceDecoder(num_keypoints)


def attribute_head(num_keypoints, num_attributes):
    """Seq-MT's head; the attribute loss needs a dataset with per-image attributes."""
    if num_attributes == 0:
        raise ValueError("the attribute loss needs a dataset with per-image attributes")
    return AttributeHead(num_keypoints, num_attributes)


def coords(out, stride):
    """Soft-argmax landmarks (B, K, 2) of the view-1 heatmaps, computed once per step and shared by the heads."""
    if "coords" not in out:
        out["coords"] = heatmaps.soft_argmax(out["heatmaps"], stride, SOFTARGMAX_BETA)
    return out["coords"]


def gen_outputs(head, out, step):
    """recon (B, 3, S, S): x rebuilt from x' and the keypoint maps of x; image: x."""
    c = coords(out, step["stride"])
    kp = torch.cat([c, torch.full_like(c[..., :1], 2.0)], -1)
    maps = heatmaps.render(kp, out["heatmaps"].shape[-2:], step["stride"], step["sigma"])   # (B, K, h, w)
    out["recon"], out["image"] = head(step["x_g"], maps), step["x"]


def attr_outputs(head, out, step):
    """attr_logits (B, A) from the landmarks; attributes (B, A) with the flip-inverted ones inverted for flipped
    samples (unknown, -1, stays unknown)."""
    S = step["x"].shape[-1]
    a = step["attributes"].clone()
    for i, name in enumerate(step["meta"].attributes):
        if name in FLIP_ATTRIBUTES:
            a[:, i] = torch.where(step["flipped"] & (a[:, i] >= 0), 1 - a[:, i], a[:, i])
    out["attr_logits"] = head(coords(out, step["stride"]) / S * 2 - 1)
    out["attributes"] = a
