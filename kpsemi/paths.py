"""Where the kit keeps data (the `data/` folder of a source checkout, or $KPSEMI_DATA, or ./data) and results, and
`save_atomic` / `write_json_atomic`, the one way it writes torch and JSON files (checkpoints, caches, split files,
recorded metrics) so a killed writer never leaves half a file; `locked`, the file lock that lets one process at a
time train a run folder that several jobs need."""
import json
import os
import threading
from contextlib import contextmanager

try:
    import fcntl
except ImportError:      # Windows: no flock; one machine, and the kit's jobs there run one after another
    fcntl = None

_PKG = os.path.dirname(os.path.abspath(__file__))


def data_dir() -> str:
    """$KPSEMI_DATA if set; else `data/` beside the package in a source checkout; else `./data`."""
    env = os.environ.get("KPSEMI_DATA")
    if env:
        return os.path.abspath(env)
    repo = os.path.dirname(_PKG)
    if os.path.exists(os.path.join(repo, "pyproject.toml")) and os.path.isdir(os.path.join(repo, "data")):
        return os.path.join(repo, "data")
    return os.path.abspath("data")


def notebooks_dir() -> str:
    """The notebooks/ folder of a source checkout (the lessons, and 12_single_run.ipynb of the reproduction grid)."""
    return os.path.join(os.path.dirname(_PKG), "notebooks")


def splits_dir() -> str:
    return os.path.join(data_dir(), "splits")


def results_dir() -> str:
    """$KPSEMI_RESULTS if set; else `results/` of a source checkout; else `./results`."""
    env = os.environ.get("KPSEMI_RESULTS")
    if env:
        return os.path.abspath(env)
    repo = os.path.dirname(_PKG)
    if os.path.exists(os.path.join(repo, "pyproject.toml")):
        return os.path.join(repo, "results")
    return os.path.abspath("results")


def _replace_atomically(path, write):
    """write(tmp) to a temporary file of this process and thread beside `path`, then rename it over `path` (atomic
    on one file system). Several processes may write the same path at once (two notebooks filling one data cache):
    each renames its own complete file, and the last one wins. A failed write leaves no temporary file."""
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_atomic(obj, path):
    """torch.save `obj` to `path` atomically (see _replace_atomically)."""
    import torch
    _replace_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(text, path):
    """Write `text` to `path` atomically (see _replace_atomically)."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    _replace_atomically(path, write)


def write_json_atomic(doc, path, **dump_kw):
    """json.dump `doc` to `path` atomically (see _replace_atomically); dump_kw go to json.dumps."""
    write_text_atomic(json.dumps(doc, **dump_kw), path)


@contextmanager
def locked(path, waiting=None):
    """Hold an exclusive lock on the file `path` (created if needed, kept afterwards) for the duration of the block:
    fcntl.flock, so one process at a time across the machines of a shared file system that supports it (local disks,
    NFSv4; Lustre and GPFS need their flock mount option). The lock goes with the process: a killed job releases it.
    `waiting`: a line printed when another process holds the lock and this one has to wait."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting:
                    print(waiting, flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
