"""Throughput of one training process at the paper preset (HRNet-W32, 256 px, batch 32 + 32 unlabeled): images/s of
the real training step (kpsemi.method.train.Trainer) for supervised vs semi-supervised (sup+SC+TE+TI) steps, AMP
(bf16 autocast) on/off, channels_last on/off and torch.compile of the KLN on/off. Every variant is timed in this one
run and printed with its ratio to the first row (supervised, NCHW, eager; AMP on a GPU), so only the ratios of one run
are compared.

    python benchmarks/paper_throughput.py                            # a GPU: the figures docs/cluster.md asks for
    python benchmarks/paper_throughput.py --preset smoke --steps 5 --no-compile   # a quick check on a CPU

Without a GPU the paper preset is skipped (one line, exit status 0): HRNet-W32 at 256 px on a CPU says nothing
about a cluster's GPUs; pass --device cpu to time it on the CPU anyway. On a CPU the AMP variants are left out
(the kit's AMP is bf16 autocast on CUDA only, so "AMP on" would time the same step as "AMP off").

images/s counts the crops of a step (batch_size labeled + batch_size x unlabeled_ratio unlabeled in a
semi-supervised step); views/s counts each crop once per view (a semi-supervised step runs x and g(x)). Seconds per
step of the semi-supervised variant you will train with give the GPU-hours of a table (docs/cluster.md).
"""
import argparse
import itertools
import time
from dataclasses import replace

import torch

from kpsemi import config, data
from kpsemi.method import losses
from kpsemi.method.train import Trainer

SEMI = ("sup", "sc", "te", "ti")


def time_variant(cfg, train, device, steps, warmup, channels_last, compile_):
    n = len(train)
    tr = Trainer(cfg, train, train, torch.arange(n // 2), torch.arange(n // 2, n), "/tmp/kpsemi-bench", device,
                 progress=False)
    if channels_last:
        tr.model.to(memory_format=torch.channels_last)
        tr.model.kln.register_forward_pre_hook(lambda m, a: (a[0].contiguous(memory_format=torch.channels_last),))
    if compile_:
        tr.model.kln = torch.compile(tr.model.kln)
    for _ in range(warmup):
        tr.train_step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(steps):
        tr.train_step()
    sync()
    dt = (time.time() - t0) / steps
    crops = tr.n_lab + tr.n_unl
    views = crops * (2 if losses.NEEDS_SECOND_VIEW & set(cfg.losses) else 1)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else float("nan")
    return {"s_per_step": dt, "images_per_s": crops / dt, "views_per_s": views / dt, "peak_gib": peak}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--backbone")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--synth-size", default="smoke", help="embedded set to draw crops from (its size does not matter)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing (torch.compile compiles here)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--device", default=None, help="default: cuda when there is a GPU; else cpu, and the paper "
                    "preset is skipped")
    a = ap.parse_args()
    if a.device is None and not torch.cuda.is_available() and a.preset == "paper" or \
            str(a.device).startswith("cuda") and not torch.cuda.is_available():
        print(f"skipped: no GPU here (torch.cuda.is_available() is False); the {a.preset} preset's throughput is "
              "measured on a GPU (--preset smoke --device cpu checks the script on a CPU)")
        return
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = a.device.startswith("cuda")
    base = config.get(a.preset, backbone=a.backbone, input_size=a.input_size, batch_size=a.batch_size,
                      pretrained=False)
    train = data.load("synthetic", "val", base.input_size, synth_size=a.synth_size, progress=False)
    gpu = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {a.preset}: {base.backbone} at {base.input_size} px, batch {base.batch_size} labeled "
          f"(+{round(base.batch_size * base.unlabeled_ratio)} unlabeled when semi-supervised), {gpu}, torch "
          f"{torch.__version__}; {a.steps} timed steps after {a.warmup}"
          + ("" if cuda else "; AMP variants left out (bf16 autocast is CUDA only)"))
    rows = []
    for semi, amp, cl, comp in itertools.product((False, True), (True, False) if cuda else (False,), (False, True),
                                                 (False,) if a.no_compile else (False, True)):
        cfg = replace(base, losses=SEMI if semi else ("sup",), amp=amp)
        r = time_variant(cfg, train, a.device, a.steps, a.warmup, cl, comp)
        rows.append(({"step": "semi-supervised" if semi else "supervised", "AMP": amp, "channels_last": cl,
                      "compile": comp}, r))
        print(f"{rows[-1][0]['step']:16s} AMP {'on ' if amp else 'off'} channels_last {'on ' if cl else 'off'} "
              f"compile {'on ' if comp else 'off'}  {r['s_per_step'] * 1000:9.1f} ms/step {r['images_per_s']:8.1f} "
              f"images/s {r['views_per_s']:8.1f} views/s  x{r['images_per_s'] / rows[0][1]['images_per_s']:.2f}"
              + (f"  peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] == r["peak_gib"] else ""), flush=True)
    ref = {"AMP": cuda, "channels_last": False, "compile": False}
    sup = next(r for k, r in rows if k == {"step": "supervised", **ref})
    semi = next(r for k, r in rows if k == {"step": "semi-supervised", **ref})
    what = f"AMP {'on' if cuda else 'off'}, NCHW, eager"
    print(f"semi-supervised / supervised step time ({what}): {semi['s_per_step'] / sup['s_per_step']:.2f}")
    print(f"seconds per step ({what}) on {gpu}: supervised {sup['s_per_step']:.4f}, semi-supervised "
          f"{semi['s_per_step']:.4f} (docs/cluster.md: GPU-hours of a table)")


if __name__ == "__main__":
    main()
