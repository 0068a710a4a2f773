"""An image classifier on class labels only (species of the embedded set, bird classes, ...): the weak
supervision of pipeline.py. A torchvision VGG or ResNet behind ImageNet normalisation, ImageNet weights through
torchvision's weights API when they can be had (a warning says when they cannot, and it trains from random
initialisation), trained with cross-entropy; `vgg_small` is a narrow network of torchvision's VGG class for CPU
presets (no ImageNet weights exist for it). Checkpoints load with weights_only=True.

    model, history = classifier.train(cfg, train, val)   # cfg: any object with the fields WeakConfig has
    classifier.accuracy(model, test)                      # top-1, percent
"""
import warnings
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.vgg import VGG, make_layers
from tqdm.auto import tqdm

from kpsemi.data import geometry
from kpsemi.errors import UserError
from kpsemi.method import warp
from kpsemi.method.models import MEAN, STD
from kpsemi.paths import save_atomic

VGG_SMALL = [16, "M", 32, "M", 64, 64, "M", 128, 128, "M"]     # torchvision VGG layer list, narrow, 4 pools


def _network(arch, num_classes, pretrained):
    if arch == "vgg_small":
        net = VGG(make_layers(VGG_SMALL, batch_norm=True), num_classes=num_classes)
        net.avgpool, net.classifier = nn.AdaptiveAvgPool2d(1), nn.Linear(VGG_SMALL[-2], num_classes)
        return net
    if not (arch.startswith("vgg") or arch.startswith("resnet")) or arch not in torchvision.models.list_models():
        raise UserError(f"classifier arch {arch!r}: use vgg_small or a torchvision VGG / ResNet name "
                        "(vgg11 ... vgg19_bn, resnet18 ... resnet152)")
    net = None
    if pretrained:
        try:
            net = torchvision.models.get_model(arch, weights=torchvision.models.get_model_weights(arch).DEFAULT)
        except Exception as e:  # offline, no cache: train from scratch, and say so
            warnings.warn(f"ImageNet weights for {arch} could not be had ({type(e).__name__}: {e}); training the "
                          "classifier from random initialisation on the training data", stacklevel=3)
    net = net or torchvision.models.get_model(arch, weights=None)
    if arch.startswith("resnet"):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    else:
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


class Classifier(nn.Module):
    """ImageNet normalisation + a torchvision network: images (B, 3, S, S) in [0, 1] -> logits (B, C)."""

    def __init__(self, arch, num_classes, pretrained=False):
        super().__init__()
        self.net = _network(arch, num_classes, pretrained)
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return self.net((images - self.mean) / self.std)


@torch.no_grad()
def predict(model, data, device="cpu", batch_size=256):
    """Predicted classes (N,) of a KeypointData."""
    was = model.training
    model.eval()
    out = torch.cat([model(data.batch(torch.arange(i, min(i + batch_size, len(data))), device)["image"]).argmax(1)
                     .cpu() for i in range(0, len(data), batch_size)])
    model.train(was)
    return out


def accuracy(model, data, device="cpu"):
    """Top-1 accuracy in percent over the samples with a known class."""
    known = data.cls >= 0
    if not known.any():
        raise UserError(f"{data.meta.name}: no class labels, so there is nothing to train a classifier on")
    return 100.0 * float((predict(model, data, device)[known] == data.cls[known]).float().mean())


def train(cfg, data, val, device="cpu", progress=True):
    """Train a Classifier on the class labels of `data` (cross-entropy, AdamW with a one-cycle schedule; flip,
    small rotation and scale augmentation); returns (model in eval mode, history [{step, loss, val_acc}]).
    Uses cfg.arch, pretrained, seed, lr, weight_decay, steps, batch_size, eval_every."""
    num_classes = len(data.meta.classes)
    if num_classes < 2 or (data.cls < 0).any():
        raise UserError(f"{data.meta.name}: weak supervision needs a class label on every training image "
                        f"({num_classes} classes, {int((data.cls < 0).sum())} images without one)")
    torch.manual_seed(cfg.seed)
    model = Classifier(cfg.arch, num_classes, cfg.pretrained).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    g = torch.Generator().manual_seed(cfg.seed)
    g_aug = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    history, running = [], 0.0
    model.train()
    for step in tqdm(range(1, cfg.steps + 1), desc=f"train {cfg.arch}", disable=not progress, leave=False):
        b = data.batch(torch.randint(len(data), (cfg.batch_size,), generator=g), device)
        A, _ = warp.random_affine(cfg.batch_size, 15.0, (0.85, 1.15), 0.05, 0.5, g_aug, device)
        x = geometry.warp(b["image"], A, padding_mode="border")                       # (B, 3, S, S)
        loss = F.cross_entropy(model(x), b["cls"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            n = cfg.eval_every if step % cfg.eval_every == 0 else step % cfg.eval_every
            history.append({"step": step, "loss": running / n, "val_acc": accuracy(model, val, device)})
            running = 0.0
            model.train()
    return model.eval(), history


def save(model, cfg, path, history=()):
    """Weights, config and training history, written atomically; read back with `load` (weights_only=True)."""
    save_atomic({"model": model.state_dict(), "config": asdict(cfg), "num_classes": model.num_classes,
                 "history": list(history)}, path)


def load(path, device="cpu"):
    """(Classifier in eval mode, the training config as a dict, the training history) from `save`'s file."""
    s = torch.load(path, map_location=device, weights_only=True)
    model = Classifier(s["config"]["arch"], s["num_classes"], pretrained=False).to(device)
    model.load_state_dict(s["model"])
    return model.eval(), s["config"], s.get("history", [])
