"""DDP scaling of one run, 1 -> N processes (torchrun, kpsemi/method/distributed.py): the same global batch (the
kit keeps it whatever the number of processes), so N processes each step on 1/N of it. For each N the script
launches `torchrun --standalone --nproc_per_node=N` on itself, times the real training step (Trainer.train_step,
gradient all-reduce included) and prints images/s, the speed-up over 1 process and the efficiency (speed-up / N),
all measured in this one run.

    python benchmarks/ddp_scaling.py --procs 1,2,4,8                     # GPUs: one process per GPU (nccl)
    python benchmarks/ddp_scaling.py --preset smoke --procs 1,2 --device cpu --threads 1    # CPU cores (gloo)

On a CPU each process gets --threads torch threads (default 1), so N processes use N x threads cores. Without a GPU
the paper preset is skipped (one line, exit status 0; --device cpu times it on CPU processes anyway); on GPUs a
process count above the number of GPUs is skipped with a line of its own.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import torch

from kpsemi import config, data
from kpsemi.method import distributed
from kpsemi.method.train import Trainer

SEMI = ("sup", "sc", "te", "ti")


def worker(a):
    """One process of the torchrun launch: time a.steps training steps, rank 0 writes the result to a.result."""
    torch.set_num_threads(a.threads)
    ctx = distributed.setup()
    cfg = replace(config.get(a.preset, backbone=a.backbone, input_size=a.input_size, batch_size=a.batch_size,
                             pretrained=False), losses=SEMI if a.losses == "semi" else ("sup",))
    with ctx.main_first():
        train = data.load("synthetic", "val", cfg.input_size, synth_size=a.synth_size, progress=False)
    n = len(train)
    tr = Trainer(cfg, train, train, torch.arange(n // 2), torch.arange(n // 2, n),
                 os.path.join(tempfile.gettempdir(), "kpsemi-ddp-bench"), a.device, progress=False)
    for _ in range(a.warmup):
        tr.train_step()
    sync = torch.cuda.synchronize if tr.device.startswith("cuda") else (lambda: None)
    sync()
    ctx.barrier()
    t0 = time.time()
    for _ in range(a.steps):
        tr.train_step()
    sync()
    ctx.barrier()
    dt = (time.time() - t0) / a.steps
    if ctx.main:
        with open(a.result, "w") as f:
            json.dump({"world_size": ctx.world_size, "s_per_step": dt, "images_per_s": (tr.n_lab + tr.n_unl) / dt}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", default="1,2", help="comma list of process counts")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--backbone")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--losses", default="semi", choices=["semi", "sup"])
    ap.add_argument("--synth-size", default="smoke")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    ap.add_argument("--device", default=None, help="default: cuda when there is a GPU, else cpu")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    cuda = torch.cuda.is_available()
    if a.device is None and not cuda and a.preset == "paper" or str(a.device).startswith("cuda") and not cuda:
        print(f"skipped: no GPU here (torch.cuda.is_available() is False); the {a.preset} preset's DDP scaling is "
              "measured on GPUs (--preset smoke --device cpu checks the script on CPU processes)")
        return
    on_gpus = (a.device or ("cuda" if cuda else "cpu")).startswith("cuda")
    base = config.get(a.preset, backbone=a.backbone, input_size=a.input_size, batch_size=a.batch_size)
    print(f"preset {a.preset}: {base.backbone} at {base.input_size} px, global batch {base.batch_size} labeled "
          f"{'+ ' + str(round(base.batch_size * base.unlabeled_ratio)) + ' unlabeled ' if a.losses == 'semi' else ''}"
          f"({a.losses}), device {a.device or ('cuda' if torch.cuda.is_available() else 'cpu')}, {a.threads} thread(s) "
          f"per process on a CPU, torch {torch.__version__}; {a.steps} timed steps after {a.warmup}")
    one = None
    for n in (int(x) for x in a.procs.split(",")):
        if on_gpus and n > torch.cuda.device_count():
            print(f"{n:3d} process(es): skipped, {torch.cuda.device_count()} GPU(s) here (one process per GPU)")
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as res:
            args = sys.argv[1:]
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                   os.path.abspath(__file__), *args, "--worker", "--result", res.name]
            env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            r = json.load(open(res.name))
        one = one or r
        speed = r["images_per_s"] / one["images_per_s"]
        print(f"{n:3d} process(es): {r['s_per_step'] * 1000:9.1f} ms/step {r['images_per_s']:9.1f} images/s  speed-up "
              f"x{speed:.2f} over {one['world_size']}, efficiency {100 * speed * one['world_size'] / n:.0f} %",
              flush=True)


if __name__ == "__main__":
    main()
