"""Speed of the weak-supervision pipeline (kpsemi/weak/) per stage, on random images of a preset's size.

Occlusion dominates: (ceil((S - patch) / stride) + 1)^2 forward passes per image, batched `occ_batch` copies at a
time; the benchmark prints it as occluded copies per second for a few batch sizes, next to one training step of
the classifier, guided backprop and the maps -> keypoints stage (NMS + Foerstner) per image.

    python benchmarks/weak_speed.py [--preset demo] [--images 8] [--threads 0]
"""
import argparse
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from kpsemi import draw
from kpsemi.weak import classifier, pipeline, saliency


def timed(fn, device, repeat=3):
    fn()                                                  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.time()
    for _ in range(repeat):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.time() - t0) / repeat


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's)")
    a = ap.parse_args(argv)
    cfg = pipeline.get_config(a.preset, num_threads=a.threads)
    pipeline.set_threads(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    S, n = cfg.input_size, a.images
    model = classifier.Classifier(cfg.arch, 8).to(device)
    x = torch.rand(n, 3, S, S, device=device)
    copies = len(saliency.window_offsets(S, cfg.patch, cfg.stride)) ** 2
    rows = []

    xb, yb = torch.rand(cfg.batch_size, 3, S, S, device=device), torch.randint(8, (cfg.batch_size,), device=device)
    opt = torch.optim.AdamW(model.parameters())

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rows.append({"stage": f"train step (batch {cfg.batch_size})", "ms": 1e3 * timed(step, device), "per": "step"})
    model.eval()
    for bs in sorted({64, cfg.occ_batch, 4 * cfg.occ_batch}):
        c = replace(cfg, occ_batch=bs)
        t = timed(lambda: saliency.occlusion(model, x, None, c.patch, c.stride, "random", batch_size=bs), device, 1)
        rows.append({"stage": f"occlusion, {copies} copies/image, batch {bs}", "ms": 1e3 * t / n, "per": "image",
                     "copies/s": round(copies * n / t)})
    rows.append({"stage": "guided backprop", "per": "image",
                 "ms": 1e3 * timed(lambda: saliency.guided_backprop(model, x), device) / n})
    maps = pipeline.detect(model, x, cfg)                     # its occlusion and gbp maps feed the last stage
    rows.append({"stage": "log-likelihood + NMS + Foerstner", "per": "image",
                 "ms": 1e3 * timed(lambda: pipeline.keypoints(maps, x.mean(1), cfg), device) / n})
    print(f"preset {cfg.preset}: {cfg.arch} at {S} px on {device}, {torch.get_num_threads()} CPU threads, "
          f"occluder {cfg.patch} px / stride {cfg.stride}")
    print(draw.markdown(rows, ["stage", "per", "ms", "copies/s"]))


if __name__ == "__main__":
    main()
