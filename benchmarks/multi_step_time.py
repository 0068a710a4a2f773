"""SemiMultiPose step time: a supervised step (L_a + L_b + L_d on B labeled frames) vs a full semi-supervised step
(+ alpha L_fl + beta L_fu, B labeled + B unlabeled frames), in frames per second, plus the time of one test-set
evaluation (inference, pose NMS and pycocotools). All numbers come from one run on one machine.

    python benchmarks/multi_step_time.py [--preset demo] [--dataset synthetic|honeybee --root DIR] [--steps 20]
"""
import argparse
import time
from dataclasses import replace

import torch

from kpsemi.multi import train as multi_train


def time_steps(cfg, data, steps, warmup=3):
    tr = multi_train.MultiTrainer(cfg, *data, "/tmp/kpsemi-multi-bench", progress=False)
    tr.step = max(cfg.fl_start, cfg.fu_start)          # past both switches: every loss of the method is on
    for _ in range(warmup):
        tr.train_step()
    t0 = time.time()
    for _ in range(steps):
        tr.train_step()
    dt = (time.time() - t0) / steps
    t1 = time.time()
    ap = tr.evaluate()["ap"]
    return dt, time.time() - t1, ap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--root", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    base = multi_train.get(a.preset, a.dataset, root=a.root)
    data = multi_train.load_data(base, progress=False)
    print(f"{a.dataset} at {base.preset}: {base.backbone}, crop {base.crop}, scale {base.scale}, batch "
          f"{base.batch_size} (+{base.unlabeled_batch} unlabeled), {torch.get_num_threads()} threads")
    res = {}
    for m in ("supervised", "semi"):
        dt, ev, _ = time_steps(replace(base, method=m), data, a.steps)
        frames = base.batch_size + (base.unlabeled_batch if m == "semi" else 0)
        res[m] = dt
        print(f"{m:>10}: {dt * 1000:7.1f} ms/step, {frames / dt:6.1f} frames/s; evaluation of {len(data[1])} test "
              f"frames {ev:.1f} s")
    print(f"semi / supervised step time: {res['semi'] / res['supervised']:.2f} (twice the frames per step)")


if __name__ == "__main__":
    main()
