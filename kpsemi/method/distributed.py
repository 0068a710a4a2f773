"""One run on several processes: torchrun + DistributedDataParallel (DDP), on CPUs (gloo) or GPUs (nccl).

    torchrun --standalone --nproc_per_node=2 -m kpsemi train --preset smoke --losses sup,sc,te,ti --out runs/ddp

A process started by torchrun (or by a submitit job with several tasks) finds RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT in its environment; `setup()` joins the process group once and returns the `Context`
every trainer asks what to do. In one process the context does nothing, and a run is bit for bit what it was.
With N processes:

- every process draws the same global batch from the same seeded samplers (batch_size labeled indices + batch_size x
  unlabeled_ratio unlabeled ones) and keeps its shard (`Context.shard`): the global batch and its labeled/unlabeled
  split are those of the one-process run; each process augments its shard with its own generator (per rank);
- one training step's forward (the KLN, the representations z_i, the KCN and the losses' extra heads) is one DDP
  forward (`StepModule`), and DDP averages the gradients; BatchNorm normalises each shard with its own statistics
  (DDP without SyncBatchNorm), and rank 0's running statistics are the model's;
- each loss is a mean over some count (losses.counts: samples, labeled samples, known attributes, ...); each
  process scales its loss by world_size x local count / global count (`loss_scale`), so the averaged gradient is
  the gradient of the mean over the global batch, also when the shards hold different numbers of labeled samples;
- rank 0 evaluates, keeps the history and writes best.pt / last.pt (with every process's generator states, so a
  resumed run continues exactly on as many processes) and broadcasts its decisions (best, patience, lr drops);
- `main_lock`: rank 0 holds a run folder's file lock while the processes train it; `main_first`: rank 0 builds the
  data caches before the others read them.
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from kpsemi.errors import UserError
from kpsemi.paths import locked

RANK_STRIDE = 1000        # a per-rank generator is seeded with run seed + offset + RANK_STRIDE x rank


def launched():
    """Whether this process is one of several of a torchrun (or submitit) launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup():
    """Join the process group of a multi-process launch once (gloo for CPU tensors, and nccl for CUDA tensors where
    there is a GPU); a no-op in a single process. Returns the Context of this process."""
    if launched() and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if cuda and local < torch.cuda.device_count():
            torch.cuda.set_device(local)
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    return context()


def context():
    """The Context of this process: rank and world size of the process group, or one process."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Context()


class StepModule(nn.Module):
    """A model and the function of a training step's forward, `fn(model, *args)`, as one module: DDP then sees every
    parameter the step uses in one forward call (the KCN and the losses' heads run outside model.forward)."""

    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args):
        return self.fn(self.model, *args)


@dataclass(frozen=True)
class Context:
    """Where this process stands in a run: `rank` of `world_size` processes (`local_rank` on its machine). The
    collectives only run when a process group is up (`collective`); otherwise every method is the identity."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0

    @property
    def collective(self):
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def device(self, device):
        """The device of this process: "cuda" means this process's GPU (cuda:<local rank>) under torchrun."""
        if self.world_size > 1 and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def shard(self, idx):
        """This process's part of the global batch's indices (idx: (N,) -> about N / world_size, in order)."""
        if self.world_size == 1:
            return idx
        if len(idx) < self.world_size:
            raise UserError(f"a batch part of {len(idx)} crops cannot be shared by {self.world_size} processes: "
                            "raise batch_size or launch fewer processes")
        return torch.tensor_split(idx, self.world_size)[self.rank]

    def wrap(self, model, fn, device):
        """The step's forward `fn(model, *args)` as a callable of *args: DDP over a StepModule under a process
        group (find_unused_parameters: a supervised step leaves the KCN and HRNet's lower-resolution outputs
        unused), else fn with the model bound."""
        if not self.collective:
            return partial(fn, model)
        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        return DistributedDataParallel(StepModule(model, fn), device_ids=ids, find_unused_parameters=True)

    def loss_scale(self, counts):
        """{loss name: world_size x local count / global count} of counts {name: scalar tensor} (the number of terms
        each loss averages over in this shard); None in one process (nothing to scale)."""
        if not self.collective:
            return None
        names = list(counts)
        local = torch.stack([torch.as_tensor(counts[n]).float() for n in names])
        total = local.clone()
        dist.all_reduce(total)
        scale = self.world_size * local / total.clamp_min(1)
        return {n: scale[i] for i, n in enumerate(names)}

    def average(self, values):
        """{name: scalar} averaged over the processes (detached): with the losses scaled by `loss_scale`, the values
        of the global batch, the same in every process. The values themselves in one process."""
        if not self.collective or not values:
            return values
        names = list(values)
        v = torch.stack([values[n].detach().float() for n in names])
        dist.all_reduce(v)
        v /= self.world_size
        return {n: v[i] for i, n in enumerate(names)}

    def gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] (picklable objects); [obj] in one process."""
        if not self.collective:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's obj, in every process."""
        if not self.collective:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.collective:
            dist.barrier()

    @contextmanager
    def main_first(self):
        """Rank 0 runs the block first (e.g. builds a data cache), then the other processes (which read it)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    @contextmanager
    def main_lock(self, path, waiting=None):
        """The file lock `path` (paths.locked) held by rank 0 for the block, which every process enters once rank 0
        holds it: several jobs that need one run folder train it one at a time; the later ones find it done."""
        if not self.collective:
            with locked(path, waiting):
                yield
            return
        if self.main:
            with locked(path, waiting):
                self.barrier()
                yield
                self.barrier()
        else:
            self.barrier()
            yield
            self.barrier()
