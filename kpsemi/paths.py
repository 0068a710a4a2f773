"""Where the kit keeps data (the `data/` folder of a source checkout, or $KPSEMI_DATA, or ./data) and results, and
`save_atomic` / `write_json_atomic`, the one way it writes torch and JSON files (checkpoints, caches, split files,
recorded metrics) so a killed writer never leaves half a file."""
import json
import os
import threading

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
