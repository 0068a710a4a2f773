"""KLN (HRNet keypoint localization network) + semantic keypoint representations + KCN (Moskvyak et al. §3.1).

KLN is timm's HRNet used as a pose network. We tap the output of every multi-scale subnetwork at the highest
resolution (stride 4: stage 1, and branch 0 of stages 2, 3, 4: 256 + 3 x 32 = 352 channels for W32, as in the
paper), upsample if needed and concatenate. Two heads read that concatenation:
  - heatmaps: a 3x3 conv neck to max(head_channels, K) channels (BN, ReLU), then a 1x1 conv to K heatmaps
    (head_channels=0 gives HRNet's own pose head instead, a 1x1 conv on branch 0, for comparison). The
    layer that produces K heatmaps must see at least K channels: every pixel's K heatmap values are a linear map of
    its input channels, so with fewer channels than keypoints (HRNet's pose head reads the 32-channel branch 0;
    the CPU backbones' branch 0 has 8) some keypoints can only be mixtures of others, and left/right twins merge
    (docs/deviations.md measures it). The tests check the rank for every backbone with K = 16, 17 and 68.
  - features: a 1x1 conv to C = 64 channels -> F (paper Fig. 2).
For keypoint i, z_i = GMP(F * h_i), and KCN (a tiny MLP shared by all keypoints, < 1,000 parameters) classifies z_i
into K types.

Backbones: hrnet_w32 (paper), hrnet_w18_small, and hrnet_tiny / hrnet_mini — narrow, one block per branch — for
CPU presets. All are the same HighResolutionNet class and the same forward path.

`build_model(cfg, K, A)` is the model of a config, with the extra heads its losses need; `load_model(path)` a
trained one from its best.pt (weights_only=True).
"""
import warnings

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.hrnet import HighResolutionNet

from kpsemi import config as C
from kpsemi.method import imagenet, losses

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _small_cfg(w, stem=16, s1=16):
    def stage(n):
        return dict(num_modules=1, num_branches=n, block_type="BASIC", num_blocks=(1,) * n,
                    num_channels=tuple(w * 2 ** i for i in range(n)), fuse_method="SUM")
    return dict(stem_width=stem, stage1=dict(num_modules=1, num_branches=1, block_type="BASIC", num_blocks=(1,),
                                             num_channels=(s1,), fuse_method="SUM"),
                stage2=stage(2), stage3=stage(3), stage4=stage(4))


SMALL = {"hrnet_tiny": _small_cfg(8), "hrnet_mini": _small_cfg(16, stem=32, s1=32)}


def make_backbone(name, pretrained=False):
    """A timm HighResolutionNet; with `pretrained`, ImageNet weights from the local file the environment names
    (imagenet.py: offline clusters), else from timm's hub for timm's own variants when they can be downloaded.
    `net.pretrained_info` says what was loaded: {"loaded": bool, "source": ..., "sha256": ... for a file}."""
    local = imagenet.local_file() if pretrained else None
    if name in SMALL:
        net = HighResolutionNet(SMALL[name], head="")
    elif pretrained and not local:
        try:
            net = timm.create_model(name, pretrained=True)
            net.pretrained_info = {"loaded": True, "source": f"timm hub ({name})"}
            return net
        except Exception as e:  # offline, hub unreachable, no weights for this variant
            warnings.warn(f"ImageNet weights for {name} could not be loaded ({type(e).__name__}: {e}); training "
                          "from random initialisation (offline: --pretrained-weights PATH)", stacklevel=2)
            net = timm.create_model(name, pretrained=False)
    else:
        net = timm.create_model(name, pretrained=False)
    net.pretrained_info = imagenet.load_into(net, name, *local) if local else {"loaded": False}
    return net


class KLN(nn.Module):
    """Heatmaps (B, K, H/4, W/4) and intermediate features F (B, C, H/4, W/4) from images (B, 3, H, W) in [0, 1]."""

    def __init__(self, num_keypoints, backbone="hrnet_w32", pretrained=False, embed_dim=64, head_channels=64):
        super().__init__()
        self.net = make_backbone(backbone, pretrained)
        self.pretrained = self.net.pretrained_info           # what metrics.json records about ImageNet weights
        for name in ("incre_modules", "downsamp_modules", "final_layer", "classifier"):  # classification head
            if isinstance(getattr(self.net, name, None), nn.Module):
                setattr(self.net, name, None)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():                                  # a probe for the channel counts, in eval mode:
            self.net.eval()                                    # BatchNorm's running statistics (ImageNet's) stay
            taps = self._taps(torch.zeros(1, 3, 64, 64))
            self.net.train()
        ch = [t.shape[1] for t in taps]
        if head_channels:
            width = max(head_channels, num_keypoints)
            self.neck = nn.Sequential(nn.Conv2d(sum(ch), width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))   # 352 -> max(64, K) for W32
        else:                                                  # head_channels=0: HRNet's pose head, for comparison
            width, self.neck = ch[-1], None                    # (a 1x1 conv on the last stage's branch 0)
        self.head = nn.Conv2d(width, num_keypoints, 1)         # the K heatmaps
        self.embed = nn.Conv2d(sum(ch), embed_dim, 1)          # 352 -> 64 for W32
        nn.init.normal_(self.head.weight, std=0.001)           # as HRNet's pose head: start from flat heatmaps
        nn.init.zeros_(self.head.bias)
        self.tap_channels = ch

    def _taps(self, x):
        n = self.net
        x = n.act1(n.bn1(n.conv1(x)))
        x = n.act2(n.bn2(n.conv2(x)))
        x = n.layer1(x)
        taps = [x]
        xl = [t(x) for t in n.transition1]
        yl = n.stage2(xl)
        taps.append(yl[0])
        xl = [t(yl[-1]) if not isinstance(t, nn.Identity) else yl[i] for i, t in enumerate(n.transition2)]
        yl = n.stage3(xl)
        taps.append(yl[0])
        xl = [t(yl[-1]) if not isinstance(t, nn.Identity) else yl[i] for i, t in enumerate(n.transition3)]
        yl = n.stage4(xl)
        taps.append(yl[0])
        return taps

    def forward(self, images):
        taps = self._taps((images - self.mean) / self.std)
        size = taps[-1].shape[-2:]
        feats = torch.cat([t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear",
                                                                        align_corners=False) for t in taps], 1)
        hm = self.head(self.neck(feats) if self.neck is not None else taps[-1])               # (B, K, h, w)
        return {"heatmaps": hm, "features": self.embed(feats)}                                # F: (B, C, h, w)


class _MaskedGMP(torch.autograd.Function):
    """max over pixels of F(c, p) * h_k(p), computed in cache-sized chunks of samples and never kept whole.

    The gradient of a max flows through its argmax only, so backward needs the argmax indices (B, K, C) and two
    gathers/scatters; memory stays O(B * (C + K) * P) instead of O(B * K * C * P)."""

    @staticmethod
    def forward(ctx, feats, hms, chunk):                        # (B, C, P), (B, K, P)
        vals, idx = zip(*[(feats[b:b + chunk, None] * hms[b:b + chunk, :, None]).max(-1)
                          for b in range(0, feats.shape[0], chunk)])               # (b, K, C) each
        idx = torch.cat(idx)
        ctx.save_for_backward(feats, hms, idx)
        return torch.cat(vals)

    @staticmethod
    def backward(ctx, g):                                       # g: (B, K, C)
        feats, hms, idx = ctx.saved_tensors
        idx_c = idx.transpose(1, 2)                             # (B, C, K)
        f_at = feats.gather(2, idx_c).transpose(1, 2)           # F(c, argmax) as (B, K, C)
        h_at = hms.gather(2, idx)                               # h_k(argmax)  as (B, K, C)
        gf = torch.zeros_like(feats).scatter_add_(2, idx_c, (g * h_at).transpose(1, 2).to(feats.dtype))
        gh = torch.zeros_like(hms).scatter_add_(2, idx, (g * f_at).to(hms.dtype))
        return gf, gh, None


def pooling_masks(heatmaps, eps=1e-6):
    """The masks z_i pools with: each heatmap clipped at 0 and divided by its peak, (B, K, h, w) -> same shape.

    Ground-truth Gaussians (peak ~1) and predictions (peaks of ~0.3-0.9 early in training, negative side lobes) then
    weigh F alike, so labeled and unlabeled samples give representations on one scale. A map with no positive
    value stays zero."""
    h = heatmaps.clamp_min(0)
    return h / h.amax(dim=(-2, -1), keepdim=True).clamp_min(eps)


def keypoint_embeddings(features, heatmaps, chunk_elems=2 ** 20, normalize=True):
    """z_i = GMP(F * h_i): features (B, C, h, w), heatmaps (B, K, h, w) -> (B, K, C).

    With `normalize` the heatmaps first go through `pooling_masks` (non-negative, peak 1). Samples are processed in
    chunks whose (b, K, C, h*w) product has about `chunk_elems` elements."""
    B, C, h, w = features.shape
    K = heatmaps.shape[1]
    if normalize:
        heatmaps = pooling_masks(heatmaps)
    chunk = max(1, chunk_elems // max(1, K * C * h * w))
    dt = torch.promote_types(features.dtype, heatmaps.dtype)
    return _MaskedGMP.apply(features.reshape(B, C, h * w).to(dt), heatmaps.flatten(2).to(dt), chunk)


def kcn_hidden(num_keypoints, embed_dim=64, budget=1000):
    """Largest hidden width keeping the KCN below `budget` parameters."""
    return max(2, (budget - 1 - num_keypoints) // (embed_dim + 1 + num_keypoints))


class KCN(nn.Module):
    """Keypoint classification network phi: an input and an output layer, shared by all keypoints."""

    def __init__(self, num_keypoints, embed_dim=64, hidden=None):
        super().__init__()
        hidden = hidden or kcn_hidden(num_keypoints, embed_dim)
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_keypoints))

    def forward(self, z):                                                       # (.., C) -> (.., K)
        return self.net(z)


class KeypointModel(nn.Module):
    """KLN + KCN: what the trainer optimises and checkpoints."""

    def __init__(self, num_keypoints, backbone="hrnet_w32", pretrained=False, embed_dim=64, head_channels=64):
        super().__init__()
        self.kln = KLN(num_keypoints, backbone, pretrained, embed_dim, head_channels)
        self.kcn = KCN(num_keypoints, embed_dim)
        self.extras = nn.ModuleDict()      # heads the losses need (Gen decoder, Seq-MT attributes): build_model
        self.num_keypoints = num_keypoints

    def forward(self, images):
        return self.kln(images)


def count_parameters(m):
    return sum(p.numel() for p in m.parameters())


def build_model(cfg, num_keypoints, num_attributes, pretrained=False):
    """KLN + KCN of a config (a Config or its dict), plus the extra heads its losses need (the loss registry's
    `head` entries, kpsemi/method/losses.py) as `model.extras`."""
    c = cfg if isinstance(cfg, dict) else C.to_dict(cfg)
    m = KeypointModel(num_keypoints, c["backbone"], pretrained, c["embed_dim"], c["head_channels"])
    m.extras = losses.heads(c["losses"], num_keypoints, num_attributes)
    return m


def load_model(path, device="cpu"):
    """(model in eval mode, config dict, meta dict) from a best.pt written by the trainer (weights_only=True)."""
    s = torch.load(path, map_location=device, weights_only=True)
    c = s["config"]
    m = build_model(c, len(s["meta"]["keypoints"]), len(s["meta"]["attributes"])).to(device)
    m.load_state_dict(s["model"])
    m.eval()
    return m, c, s["meta"]
