"""The reproduction grid as submitit jobs (kpsemi/repro/cluster.py) on submitit's local cluster: the table renders,
the jobs' logs lie under --out, a preempted cell is requeued and resumes its run from last.pt, and a cell's job of
several tasks (--gpus-per-job N) is waited for task by task."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import submitit

from kpsemi import config, runs
from kpsemi.errors import JobError, UserError
from kpsemi.paths import locked
from kpsemi.repro import cluster, grid


def _wait_for(what, timeout=600):
    t0 = time.time()
    while not what():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.5)


def _task_of(logs, cell):
    """The pid of the submitit task (python -m submitit.core._submit LOGS) whose log says it runs `cell`."""
    log = next((p for p in glob.glob(f"{logs}/*_0_log.out") if f"cell {cell.id}:" in open(p).read()), None)
    if log is None:
        return None
    job = os.path.basename(log).split("_")[0]
    for p in glob.glob("/proc/[0-9]*"):
        try:
            cmd, env = open(f"{p}/cmdline", "rb").read().split(b"\0"), open(f"{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and f"SUBMITIT_LOCAL_JOB_ID={job}".encode() in env:
            return int(p.split("/")[2])
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job's process through /proc")
def test_submitit_grid_renders_and_a_preempted_cell_resumes(tmp_path, smoke_dir, monkeypatch):
    monkeypatch.setenv("KPSEMI_RESULTS", str(tmp_path / "results"))      # the jobs inherit it
    cfg = config.get("smoke", losses=("sup",), labeled=0.05)              # the supervised cell's run
    run = runs.run_dir(cfg)
    assert runs.run(cfg, run, progress=False, stop_at=20) is None          # killed after its step-20 checkpoint
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kpsemi", "reproduce", "--table", "2", "--preset", "smoke", "--fractions", "0.05",
           "--rows", "supervised,sc", "--executor", "submitit", "--cluster", "local", "--timeout-min", "60",
           "--out", str(out)]
    logs = str(out / "table2" / "submitit")
    sup = next(c for c in grid.grid("2", "smoke", fractions=(0.05,)) if c.row == "supervised")
    with locked(run + ".lock"):                  # the supervised cell's job waits for the run until it is released
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for(lambda: os.path.exists(out / "table2" / "cells" / sup.id / "cell.json"))   # the job is running
        _wait_for(lambda: _task_of(logs, sup) is not None)
        job = _task_of(logs, sup)
        os.kill(job, signal.SIGUSR2)             # what SLURM sends before preempting a job or at its time limit
        _wait_for(lambda: any("requeued, its run resumes" in open(p).read() for p in glob.glob(f"{logs}/*_log.out")))
    stdout, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, stdout[-3000:]
    md = open(out / "table2" / "table2.md").read()
    assert "| synthetic | supervised |" in md and "| synthetic | sc |" in md
    assert len(glob.glob(f"{logs}/*_log.out")) == 2 and len(glob.glob(f"{logs}/*_log.err")) == 2
    assert any("this job is preempted" in open(p).read() for p in glob.glob(f"{logs}/*_log.err"))
    nb = open(out / "table2" / "cells" / sup.id / "12_single_run.ipynb").read()
    assert f"resumed {run} at step 20" in nb
    m = json.load(open(out / "table2" / "cells" / sup.id / "metrics.json"))["metrics"]
    assert m["steps"] == 40
    # a second call finds both cells done and submits nothing
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "2 of 2 cells already done" in r.stdout and "submitted" not in r.stdout


def test_bad_cluster_options_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="--gpus-per-job must be at least 0"):
        cluster.SubmititExecutor("local", gpus_per_job=-1)
    with pytest.raises(UserError, match=re.escape("--rows magic: not a row of table 2; its rows are te+ti+sc, te+ti")):
        grid.main("2", "smoke", fractions=(0.05,), out=str(tmp_path), rows=("magic",))
    r = subprocess.run([sys.executable, "-m", "kpsemi", "reproduce", "--table", "smp", "--executor", "submitit"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "the smp table trains in this process" in r.stderr


def _rank():
    return submitit.JobEnvironment().global_rank


def _rank_1_fails():
    if submitit.JobEnvironment().global_rank == 1:
        raise ValueError("rank 1 fails")
    return 0


def test_a_job_of_several_tasks_is_waited_for_task_by_task(tmp_path):
    ex = cluster.SubmititExecutor("local", gpus_per_job=2, progress=False, poll_s=0.2)
    cell = grid.grid("2", "smoke", fractions=(0.05,))[0]
    job = ex.executor(str(tmp_path), "tasks").submit(_rank)
    ex.wait([(cell, job)])                                       # every task's result read, no error
    assert job.results() == [0, 1]
    assert len(glob.glob(f"{tmp_path}/submitit/{job.job_id}_*_log.out")) == 2
    bad = ex.executor(str(tmp_path), "tasks").submit(_rank_1_fails)
    with pytest.raises(JobError, match=re.escape(f"{cell.id} (ValueError: rank 1 fails; log "
                                                 f"{tmp_path}/submitit/{bad.job_id}_*_log.err)")):
        ex.wait([(cell, bad)])
