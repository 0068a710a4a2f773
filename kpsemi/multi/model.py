"""The one-stage multi-instance model of SemiMultiPose (a DirectPose-like network) and its inference.

    backbone (timm HRNet, or a timm CNN such as the seed's resnet50; wide ones get a 1x1 conv per level) -> all
    levels upsampled to stride 4 and concatenated -> 3x3 conv to C channels -> three heads, each `head_convs` 3x3
    conv + GroupNorm + ReLU and a 1x1 output:
        B1  kp   (B, K, h, w)      keypoint heatmap logits (sigmoid -> confidence)
        B2  box  (B, 1, h, w)      box heatmap logits: is this cell inside an instance's keypoint box
        B3  off  (B, K, 2, h, w)   offsets from the cell to each keypoint of its instance, in offset_scale cells

Inference (`decode`): every cell with sigmoid(B2) > delta proposes a whole pose y(s) = s + D(s) (Eq. 8) with
confidence v(s); a proposal's score is v(s) x the mean of sigmoid(B1) read at its keypoints. Proposals are grouped
by greedy pose NMS (take the best remaining proposal, group every proposal whose OKS to it, with `nms_sigma`, is
above `nms_oks`); the group's pose is the v-weighted mean of its members' poses and its score the sum of its
members' scores: an animal is as confident as the mass of box cells that vote for the same pose.
Simplification vs DirectPose: one stride-4 level (no FPN levels, no FCOS centre-ness or box regression, no
deformable keypoint-alignment module).
"""
import warnings

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from kpsemi.method import models


def _backbone(name, pretrained):
    """(module, fn images -> list of feature maps at strides 4, 8, 16, 32)."""
    if name.startswith("hrnet"):
        net = models.make_backbone(name, pretrained)
        for a in ("incre_modules", "downsamp_modules", "final_layer", "classifier"):   # classification head
            if isinstance(getattr(net, a, None), nn.Module):
                setattr(net, a, None)
        return net, net.forward_features
    try:
        net = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(1, 2, 3, 4))
    except Exception as e:  # offline: no ImageNet weights
        if not pretrained:
            raise
        warnings.warn(f"ImageNet weights for {name} could not be loaded ({type(e).__name__}: {e}); training from "
                      "random initialisation", stacklevel=3)
        net = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    return net, net


def _head(c, out, n_conv=2, prior=None):
    layers = []
    for _ in range(n_conv):
        layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GroupNorm(min(8, c), c), nn.ReLU(inplace=True)]
    last = nn.Conv2d(c, out, 1)
    if prior is None:                                     # offsets start at zero
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
    else:                                                 # focal-loss prior init (Lin et al.): sigmoid = prior
        nn.init.normal_(last.weight, std=0.01)
        nn.init.constant_(last.bias, -float(torch.log(torch.tensor((1 - prior) / prior))))
    return nn.Sequential(*layers, last)


class MultiPoseNet(nn.Module):
    def __init__(self, num_keypoints, backbone="hrnet_tiny", pretrained=False, width=64, head_convs=2):
        super().__init__()
        self.net, self._features = _backbone(backbone, pretrained)
        self.register_buffer("mean", torch.tensor(models.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(models.STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            chs = [f.shape[1] for f in self._features(torch.zeros(1, 3, 64, 64))]
        self.lateral = None                                # wide backbones (ResNet-50): 1x1 per level first
        if sum(chs) > 4 * width:
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chs)
            chs = [width] * len(chs)
        self.fuse = nn.Sequential(nn.Conv2d(sum(chs), width, 3, padding=1, bias=False),
                                  nn.GroupNorm(min(8, width), width), nn.ReLU(inplace=True))
        self.kp = _head(width, num_keypoints, head_convs, prior=0.01)
        self.box = _head(width, 1, head_convs, prior=0.01)
        self.off = _head(width, 2 * num_keypoints, head_convs)
        self.num_keypoints, self.stride = num_keypoints, 4

    def forward(self, images):                             # (B, 3, H, W) in [0, 1]
        feats = self._features((images - self.mean) / self.std)
        if self.lateral is not None:
            feats = [lat(f) for lat, f in zip(self.lateral, feats)]
        size = feats[0].shape[-2:]                         # stride 4
        x = torch.cat([f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear",
                                                                    align_corners=False) for f in feats], 1)
        x = self.fuse(x)                                   # (B, C, h, w)
        B, _, h, w = x.shape
        return {"kp": self.kp(x), "box": self.box(x),
                "off": self.off(x).view(B, self.num_keypoints, 2, h, w)}


def sample(maps, pts):
    """Bilinear read of maps (K, h, w) at points (S, K, 2) in cell units -> (S, K)."""
    K, h, w = maps.shape
    g = torch.stack([pts[..., 0] / w * 2 - 1, pts[..., 1] / h * 2 - 1], -1)      # normalised, align_corners=False
    v = F.grid_sample(maps[:, None], g.permute(1, 0, 2)[:, :, None], align_corners=False, padding_mode="border")
    return v[:, 0, :, 0].T                                                       # (S, K)


def pose_oks(poses, refs, sigma):
    """OKS (R, S) of poses (S, K, 2) to reference poses (R, K, 2), area = each reference's keypoint box, one sigma."""
    area = (refs.amax(1) - refs.amin(1)).clamp_min(1.0).prod(-1)                 # (R,) cell units
    d2 = ((poses[None] - refs[:, None]) ** 2).sum(-1)                            # (R, S, K)
    return torch.exp(-d2 / (2 * area[:, None, None] * (2 * sigma) ** 2)).mean(-1)


@torch.no_grad()
def decode(out, stride=4, delta=0.05, offset_scale=4.0, nms_sigma=0.25, nms_oks=0.5, max_dets=100,
           max_proposals=3000):
    """Per image: poses (n, K, 3) (x, y in input pixels, B1 confidence at the keypoint) and scores (n,)."""
    kp, box, off = torch.sigmoid(out["kp"].float()), torch.sigmoid(out["box"].float()), out["off"].float()
    B, K, h, w = kp.shape
    res = []
    for b in range(B):
        v = box[b, 0]
        i, j = (v > delta).nonzero(as_tuple=True)
        cell = torch.stack([j, i], -1).float() + 0.5
        poses = cell[:, None] + off[b, :, :, i, j].permute(2, 0, 1) * offset_scale  # (S, K, 2) cell units
        conf = v[i, j]
        score = conf * sample(kp[b], poses).mean(-1)                               # v x B1 at the keypoints
        order = score.argsort(descending=True)[:max_proposals]                    # best first
        poses, conf, score = poses[order], conf[order], score[order]
        P, Q = [], []
        while len(Q) < max_dets and len(score):
            grp = pose_oks(poses, poses[:1], nms_sigma)[0] > nms_oks                # same animal as the best
            grp[0] = True
            wgt = conf[grp][:, None, None]
            P.append((poses[grp] * wgt).sum(0) / wgt.sum())                        # v-weighted pose
            Q.append(score[grp].sum())                                             # the votes' mass
            poses, conf, score = poses[~grp], conf[~grp], score[~grp]
        if P:
            P = torch.stack(P)
            c = sample(kp[b], P)                                                   # B1 at each final keypoint
            res.append((torch.cat([P * stride, c[..., None]], -1), torch.stack(Q)))
        else:
            res.append((torch.zeros(0, K, 3), torch.zeros(0)))
    return res


def load_model(path, device="cpu"):
    """(MultiPoseNet in eval mode, config dict) from a checkpoint of the multi-animal trainer (weights_only=True)."""
    s = torch.load(path, map_location=device, weights_only=True)
    c = s["config"]
    last = max((k for k in s["model"] if k.startswith("kp.") and k.endswith(".bias")),
               key=lambda k: int(k.split(".")[1]))
    m = MultiPoseNet(s["model"][last].numel(), c["backbone"], False, c["width"], c["head_convs"]).to(device)
    m.load_state_dict(s["model"])
    return m.eval(), c
