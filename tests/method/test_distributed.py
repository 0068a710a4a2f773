"""One run on several processes (kpsemi/method/distributed.py), on 2 CPU processes with gloo: a DDP step equals one
process accumulating the gradients of the same two shards, losses are normalised by global counts, a killed DDP run
resumes exactly, rank 0's lr drop reaches every process, and `torchrun -m kpsemi train` writes world_size 2."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kpsemi import config, runs
from kpsemi.errors import UserError
from kpsemi.method import distributed, losses
from kpsemi.method.train import Trainer

LOSS_SETS = (("sup", "sc", "te", "ti"), ("sup", "gen", "attr", "elt_lm"))     # the method + the baselines' losses


def _cfg(names, **kw):
    return config.get("smoke", losses=names, **{"max_steps": 12, "eval_every": 6, "patience": 5, **kw})


def _spawn(fn, folder):
    """fn(rank, folder) in 2 processes that form a gloo process group (as torchrun's would)."""
    mp.spawn(_worker, args=(fn, str(folder)), nprocs=2, join=True)


def _worker(rank, fn, folder):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        fn(rank, folder)
    finally:
        dist.destroy_process_group()


# ---- one step: DDP == accumulated shard gradients --------------------------------------------------------------
def _uneven_outputs():
    """A fake step's outputs for sup, te and attr over 5 samples, and its two shards of 3 and 2 samples with 1 and 2
    labeled samples and different numbers of known attributes."""
    g = torch.Generator().manual_seed(0)
    B, K, h = 5, 4, 8
    hm = torch.rand(B, K, h, h, generator=g)
    out = {"heatmaps": hm, "target": torch.rand(B, K, h, h, generator=g), "weight": torch.ones(B, K),
           "labeled": torch.tensor([True, False, False, True, True]), "unsup": hm,
           "heatmaps_g": torch.rand(B, K, h, h, generator=g), "H": torch.eye(3).expand(B, 3, 3), "te_detach": False,
           "attr_logits": torch.randn(B, 3, generator=g), "attributes": torch.tensor(
               [[1, 0, -1], [-1, -1, -1], [0, 1, 1], [1, -1, 0], [-1, -1, 1]])}
    shard = [{k: v[sl] if torch.is_tensor(v) else v for k, v in out.items()} for sl in (slice(0, 3), slice(3, 5))]
    return out, shard


def _one_step(rank, folder):
    ctx = distributed.context()
    out, shard = _uneven_outputs()
    names, w = ("sup", "te", "attr"), {"sup": 1.0, "te": 1.0, "attr": 1.0}
    _, parts = losses.total(shard[rank], names, w, scale=ctx.loss_scale(losses.counts(shard[rank], names)))
    avg = ctx.average(parts)
    for names in LOSS_SETS:
        cfg = _cfg(names)
        train, val, _, lab, unl = runs.load_data(cfg, progress=False)
        tr = Trainer(cfg, train, val, lab, unl, os.path.join(folder, "+".join(names)), device="cpu", progress=False)
        tr.train_step()
        if rank == 0:
            torch.save(tr.model.state_dict(), os.path.join(folder, "+".join(names) + ".pt"))
    if rank == 0:
        json.dump({n: float(v) for n, v in avg.items()}, open(os.path.join(folder, "uneven.json"), "w"))


def _accumulated_step(cfg, folder, monkeypatch):
    """The reference in one process: the Trainer as rank 0 and as rank 1 of 2 (same shards, same augmentation),
    each shard's forward in train mode (its own BatchNorm statistics), the losses scaled by the global counts,
    the two gradients averaged as DDP does, one Adam step of rank 0's copy."""
    train, val, _, lab, unl = runs.load_data(cfg, progress=False)
    shards = []
    for r in range(2):
        monkeypatch.setattr(distributed, "setup", lambda r=r: distributed.Context(rank=r, world_size=2))
        tr = Trainer(cfg, train, val, lab, unl, str(folder / f"ref{r}"), device="cpu", progress=False)
        out = tr.forward(tr.next_batch())
        shards.append((tr, out, losses.counts(out, tr.names)))
    total = {n: sum(c[n] for _, _, c in shards) for n in shards[0][2]}
    for tr, out, c in shards:
        loss, _ = losses.total(out, tr.names, cfg.weights, scale={n: 2 * c[n] / total[n] for n in c})
        loss.backward()
    ref, other = shards[0][0], shards[1][0]
    for p, q in zip(ref.model.parameters(), other.model.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            p.grad = (p.grad + q.grad) / 2
    ref.opt.step()
    return ref.model.state_dict()


def test_one_ddp_step_equals_accumulated_shard_gradients(tmp_path, smoke_dir, monkeypatch):
    _spawn(_one_step, tmp_path)
    # losses over uneven shards, scaled by the global counts and averaged: the global batch's means
    out, _ = _uneven_outputs()
    _, whole = losses.total(out, ("sup", "te", "attr"), {"sup": 1.0, "te": 1.0, "attr": 1.0})
    got = json.load(open(tmp_path / "uneven.json"))
    for n, v in whole.items():
        assert got[n] == pytest.approx(float(v), rel=1e-6), n
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                         # as in the workers: the same summation order
    try:
        for names in LOSS_SETS:
            cfg = _cfg(names)
            ddp = torch.load(tmp_path / ("+".join(names) + ".pt"), weights_only=True)
            ref = _accumulated_step(cfg, tmp_path / "+".join(names), monkeypatch)
            monkeypatch.undo()
            train, _, _, _, _ = runs.load_data(cfg, progress=False)
            torch.manual_seed(config.run_seed(cfg))
            init = Trainer(cfg, train, train, torch.arange(4), torch.arange(4, 8), str(tmp_path / "init"),
                           device="cpu", progress=False).model.state_dict()
            assert ddp.keys() == ref.keys()
            moved = 0
            for k in ref:                           # parameters and BatchNorm running statistics of rank 0
                torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
                moved += ref[k].is_floating_point() and not torch.equal(ref[k], init[k])
            assert moved > 0.5 * len(ref), (names, moved, len(ref))          # the step changed the model
    finally:
        torch.set_num_threads(threads)


# ---- resume under DDP -------------------------------------------------------------------------------------------
def _killed_and_resumed(rank, folder):
    cfg = _cfg(("sup", "sc", "te", "ti"))
    full = runs.run(cfg, os.path.join(folder, "full"), progress=False)
    # "kill" after step 8: the last checkpoint is from step 6, so steps 7-8 are redone after the resume
    assert runs.run(cfg, os.path.join(folder, "cut"), progress=False, stop_at=8) is None
    resumed = runs.run(cfg, os.path.join(folder, "cut"), resume=True, progress=False)
    assert runs.run(cfg, os.path.join(folder, "half"), progress=False, stop_at=8) is None
    if rank == 0:
        json.dump({"full": full, "resumed": resumed}, open(os.path.join(folder, "result.json"), "w"))


def test_killed_and_resumed_ddp_run_ends_like_an_uninterrupted_one(tmp_path, smoke_dir):
    _spawn(_killed_and_resumed, tmp_path)
    r = json.load(open(tmp_path / "result.json"))
    full, resumed = r["full"], r["resumed"]
    assert full["world_size"] == resumed["world_size"] == 2
    for k in ("val_pck", "test_pck", "steps", "best_step", "test_per_keypoint"):
        assert resumed[k] == full[k], k
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert open(tmp_path / "full" / "history.jsonl").read().count("\n") == 2
    hist = [[{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in open(tmp_path / d / "history.jsonl")]
            for d in ("full", "cut")]
    assert hist[0] == hist[1]
    last = torch.load(tmp_path / "half" / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["ranks"]) == 2
    assert not torch.equal(last["ranks"][0]["g_aug"], last["ranks"][1]["g_aug"])     # each rank's own stream
    with pytest.raises(UserError, match="written by a run on 2 process"):            # one process cannot resume it
        runs.run(_cfg(("sup", "sc", "te", "ti")), str(tmp_path / "half"), resume=True, progress=False)


# ---- rank 0's decisions reach every process ------------------------------------------------------------------
def _lr_drop(rank, folder):
    cfg = _cfg(("sup", "sc"), max_steps=4, eval_every=2, lr_drops=1, lr_drop_at=0.5)
    train, val, _, lab, unl = runs.load_data(cfg, progress=False)
    tr = Trainer(cfg, train, val, lab, unl, os.path.join(folder, "run"), device="cpu", progress=False).fit()
    json.dump({"lr": [g["lr"] for g in tr.opt.param_groups], "drops": tr.drops, "step": tr.step,
               "params": [float(p.double().sum()) for p in tr.model.parameters()]},
              open(os.path.join(folder, f"rank{rank}.json"), "w"))


def test_lr_drop_decided_by_rank_0_reaches_every_process(tmp_path, smoke_dir):
    _spawn(_lr_drop, tmp_path)
    r0, r1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    lr = config.get("smoke").lr
    assert r0["drops"] == r1["drops"] == 1 and r0["step"] == r1["step"] == 4
    assert r0["lr"] == r1["lr"] == [pytest.approx(lr * 0.1)]               # lr_drop_at 0.5: dropped at step 2
    assert r0["params"] == r1["params"]                                     # the processes stay one model
    hist = [json.loads(x) for x in open(tmp_path / "run" / "history.jsonl")]
    assert [h["step"] for h in hist] == [2, 4] and hist[1]["lr"] == pytest.approx(lr * 0.1)


# ---- the command line under torchrun ----------------------------------------------------------------------------
def test_torchrun_train_writes_world_size(tmp_path, smoke_dir):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                        "kpsemi", "train", "--preset", "smoke", "--losses", "sup,sc", "--max-steps", "4",
                        "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.load(open(out / "metrics.json"))
    assert m["world_size"] == 2 and m["steps"] == 4 and m["pretrained_loaded"] is False
    assert r.stdout.count("-> " + str(out)) == 1 and "2 processes" in r.stdout        # rank 0 reports, once
