"""The run cache shared by several jobs (kpsemi/runs.py's `cached`, paths.locked): two processes that need the same
run train it once; the one that waited reads the finished run back."""
import os
import subprocess
import sys
import time

from kpsemi import config, runs
from kpsemi.paths import locked

SCRIPT = """
import os, sys
from kpsemi import config, runs
from kpsemi.method import train
fit = train.Trainer.fit
def logged(self, *a, **k):                  # every training of a run leaves a line
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
    return fit(self, *a, **k)
train.Trainer.fit = logged
m, d = runs.cached(config.get("smoke", losses=("sup",), max_steps=6, eval_every=3))
print("result", m["seconds"], m["steps"], d, flush=True)
"""


def test_two_processes_needing_one_run_train_it_once(tmp_path, smoke_dir):
    cfg = config.get("smoke", losses=("sup",), max_steps=6, eval_every=3)
    folder = runs.run_dir(cfg)
    log = tmp_path / "trainings.log"
    with locked(folder + ".lock"):               # both start while the lock is taken: both have to wait
        procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(log)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for p in procs:                         # until each says it waits (then it is blocked on the lock)
            assert p.stdout.readline().startswith(f"waiting for {folder}: another process is training it")
        time.sleep(0.5)
        assert not log.exists()
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(open(log).read().split()) == 1                     # trained once
    results = [next(x for x in o.splitlines() if x.startswith("result")) for o in outs]
    assert results[0] == results[1] and results[0].endswith(f" 6 {folder}")     # the same run, read back
    assert os.path.exists(os.path.join(folder, "metrics.json"))
