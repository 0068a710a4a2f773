"""The grid's cells as cluster jobs through submitit: `python -m kpsemi reproduce ... --executor submitit`.

    python -m kpsemi reproduce --table 1 --preset paper --datasets lsp --seeds 0,1,2 --executor submitit \
        --cluster slurm --partition gpu --gpus-per-job 1 --timeout-min 1440 --array-parallelism 16

Every cell that is not done yet (no metrics.json under OUT/cells/) becomes one job that runs it as the sequential
grid does (grid.run_cell: papermill of notebooks/12_single_run.ipynb in a kernel of its own): on SLURM one array job
of all of them, at most --array-parallelism running at once; on `local` subprocesses of this machine, all at once
(to try a grid on a workstation). submitit keeps its pickles and the jobs' logs in OUT/submitit/
(<job id>_<task>_log.out and .err: task 0, or one per GPU of a cell on several). The submitting process waits for
every task of every job, reports the failed cells with their logs, and the table is rendered from the finished cells.
The jobs inherit the environment: set KPSEMI_RESULTS (and KPSEMI_DATA) to folders of a shared file system, so that
every job finds the runs and data of the others.

A job with several GPUs (--gpus-per-job N) runs N tasks that form one process group (submitit's
TorchDistributedEnvironment): the cell's run trains on N GPUs with DDP (kpsemi/method/distributed.py); rank 0's
executed notebook is the cell's, the other ranks keep theirs in the cell folder's rank<r>/.

Preemption and time limits: `CellJob` is a submitit Checkpointable. When SLURM preempts a job or its time limit
comes (submitit's signal), submitit calls `CellJob.checkpoint`, which requeues the same cell (at most MAX_REQUEUES
times after a time-out; preemptions do not count); the requeued job's run resumes from its last.pt (written at every
evaluation, runs.cached resumes), so at most eval_every steps are done twice. The run folders' locks keep a requeued
job, a second `reproduce` of the same grid or two cells sharing a run (PL's teacher and the supervised row) from
training one run twice at once.
"""
import os

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment
from tqdm.auto import tqdm

from kpsemi.errors import JobError, UserError
from kpsemi.repro import grid

CLUSTERS = ("local", "slurm")
MAX_REQUEUES = 20       # time-outs after which a cell is given up (each resumes from its last checkpoint)


def _last_error(e):
    """The exception line of a failed job's trace (submitit wraps it in lines of its own), cut to 160 characters."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip() and not x.startswith("---")
             and "check full logs" not in x and not x.strip().startswith(("- ", "File ", "^"))]
    return (lines[-1] if lines else type(e).__name__)[:160]


class CellJob(Checkpointable):
    """One grid cell as a submitit job: `CellJob()(cell, folder)` runs it; submitit calls `checkpoint` on
    preemption or time-out and resubmits what it returns."""

    def __call__(self, cell, folder):
        env = submitit.JobEnvironment()
        print(f"cell {cell.id}: {cell.row}, {cell.dataset}, {cell.labeled:g} labeled, split seed {cell.split_seed} "
              f"-> {folder}", flush=True)
        if env.num_tasks > 1:          # several tasks: one DDP run, its processes found through the environment
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            if env.global_rank > 0:
                folder = os.path.join(folder, f"rank{env.global_rank}")
        return grid.run_cell(cell, folder)

    def checkpoint(self, cell, folder):
        """Requeue the same cell; its run resumes from its last checkpoint (the notebook says "resumed ... at step")."""
        print(f"cell {cell.id} is preempted or out of time: requeued, its run resumes from its last.pt", flush=True)
        return DelayedSubmission(CellJob(), cell, folder)


class SubmititExecutor:
    """Sends the cells to a cluster through submitit, one job each (grid's executor interface: `run(cells, out)`).

    cluster: "slurm" or "local"; partition: the SLURM partition (None: the cluster's default); gpus_per_job: GPUs
    (and processes) per cell; timeout_min: each job's time limit; array_parallelism: SLURM array jobs running at
    once."""

    def __init__(self, cluster="slurm", partition=None, gpus_per_job=1, timeout_min=1440, array_parallelism=16,
                 progress=True, poll_s=10.0):
        if cluster not in CLUSTERS:
            raise UserError(f"--cluster {cluster!r}: choose one of {', '.join(CLUSTERS)}")
        for name, v, least in (("--gpus-per-job", gpus_per_job, 0), ("--timeout-min", timeout_min, 1),
                               ("--array-parallelism", array_parallelism, 1)):
            if v < least:
                raise UserError(f"{name} must be at least {least}, got {v}")
        self.cluster, self.partition, self.gpus, self.timeout_min = cluster, partition, gpus_per_job, timeout_min
        self.parallel, self.progress, self.poll_s = array_parallelism, progress, poll_s

    def executor(self, out, name):
        ex = submitit.AutoExecutor(folder=os.path.join(out, "submitit"), cluster=self.cluster,
                                   slurm_max_num_timeout=MAX_REQUEUES, local_max_num_timeout=MAX_REQUEUES)
        ex.update_parameters(name=name, timeout_min=self.timeout_min, gpus_per_node=self.gpus,
                             tasks_per_node=max(1, self.gpus), slurm_array_parallelism=self.parallel,
                             **({"slurm_partition": self.partition} if self.partition else {}))
        return ex

    def submit(self, cells, out):
        """[(cell, job)] for the cells not done yet, submitted (one array job on SLURM)."""
        left = grid.todo(cells, out, self.progress)
        if not left:
            return []
        ex = self.executor(out, f"kpsemi-table{left[0].table}")
        jobs = ex.map_array(CellJob(), left, [grid.cell_dir(out, c) for c in left])
        if self.progress:
            print(f"submitted {len(jobs)} cells to {self.cluster} (jobs {jobs[0].job_id}..{jobs[-1].job_id}); logs in "
                  f"{os.path.join(out, 'submitit')}", flush=True)
        return list(zip(left, jobs))

    def wait(self, submitted):
        """Wait for every job; a JobError naming the failed cells and their logs if any failed."""
        by_id = {job.job_id: cell for cell, job in submitted}
        failed = []
        bar = tqdm(total=len(submitted), desc="grid cells (jobs)", disable=not self.progress)
        for job in submitit.helpers.as_completed([j for _, j in submitted], poll_frequency=self.poll_s):
            try:
                job.results()                          # every task's (a cell on several GPUs has one per GPU)
            except Exception as e:                     # the job's own error is in its log(s)
                log = job.paths.stderr if self.gpus <= 1 else os.path.join(job.paths.folder,
                                                                           f"{job.job_id}_*_log.err")
                failed.append(f"{by_id[job.job_id].id} ({_last_error(e)}; log {log})")
            bar.update(1)
        bar.close()
        if failed:
            raise JobError(f"{len(failed)} of {len(submitted)} cells failed: {'; '.join(failed)}. The finished cells "
                           "are kept; run the command again to retry the others")

    def run(self, cells, out):
        self.wait(self.submit(cells, out))
