"""Step-time benchmark: supervised vs semi-supervised training throughput, in image-views per second.

A supervised step runs one view of B labeled images; a semi-supervised step (sup+SC+TE+TI) runs two views (x and
g(x)) of B labeled + B x unlabeled_ratio unlabeled images (the trainer's `n_unl`). Per view, the semi-supervised step should cost at most ~10 % more
than the bare backbone passes: the KCN, the warps and the extra losses are the overhead. Also printed: the share of
step time spent assembling batches (data wait) and the peak memory. All ratios come from one run.

    python benchmarks/step_time.py [--preset demo] [--steps 30] [--backbone hrnet_tiny] [--input-size 64]
"""
import argparse
import resource
import time
from dataclasses import replace

import torch

from kpsemi import config, data
from kpsemi.method import losses, models
from kpsemi.method.train import Trainer


def peak_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(cfg, train, val, device, steps, warmup=5):
    n = len(train)
    tr = Trainer(cfg, train, val, torch.arange(n // 2), torch.arange(n // 2, n), "/tmp/kpsemi-bench", device,
                 progress=False)
    for _ in range(warmup):
        tr.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tr.data_seconds = 0.0
    t0 = time.time()
    for _ in range(steps):
        tr.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.time() - t0
    views = (cfg.batch_size + tr.n_unl) * (2 if losses.NEEDS_SECOND_VIEW & set(cfg.losses) else 1)
    return {"s_per_step": dt / steps, "views_per_s": views * steps / dt, "data_share": tr.data_seconds / dt,
            "peak_mb": peak_mb(device)}


def time_backbone(cfg, device, steps, views, warmup=3):
    """Bare forward+backward of the KLN on `views` images: the floor the full steps are compared with."""
    m = models.KeypointModel(16, cfg.backbone, False, cfg.embed_dim).to(device)
    opt = torch.optim.Adam(m.parameters(), cfg.lr)
    x = torch.rand(views, 3, cfg.input_size, cfg.input_size, device=device)
    for i in range(warmup + steps):
        if i == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.time()
        o = m(x)
        (o["heatmaps"].float().mean() + o["features"].float().mean()).backward()
        opt.step()
        opt.zero_grad()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return views * steps / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--backbone")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    base = config.get(a.preset, backbone=a.backbone, input_size=a.input_size, batch_size=a.batch_size)
    train = data.load("synthetic", "val", base.input_size, synth_size=base.synth_size, progress=False)
    print(f"preset {a.preset}: {base.backbone} at {base.input_size}px, batch {base.batch_size}, device {a.device}, "
          f"{torch.get_num_threads()} threads")
    sup = time_steps(replace(base, losses=("sup",)), train, train, a.device, a.steps)
    semi = time_steps(replace(base, losses=("sup", "sc", "te", "ti")), train, train, a.device, a.steps)
    bare = time_backbone(base, a.device, a.steps, 2 * base.batch_size)   # as many views as a supervised pair
    for name, r in (("supervised (1 view)", sup), ("semi-supervised (2 views)", semi)):
        print(f"{name:28s} {r['s_per_step'] * 1000:8.1f} ms/step {r['views_per_s']:8.1f} views/s  "
              f"data wait {100 * r['data_share']:4.1f} %  peak {r['peak_mb']:.0f} MB")
    print(f"{'bare KLN fwd+bwd (2B views)':28s} {'':17s}{bare:8.1f} views/s")
    print(f"ratio semi / supervised time per view: {sup['views_per_s'] / semi['views_per_s']:.3f}")
    print(f"overhead of the semi-supervised step over the bare backbone passes, per view: "
          f"{100 * (bare / semi['views_per_s'] - 1):+.1f} %")


if __name__ == "__main__":
    main()
