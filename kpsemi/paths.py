"""Where the kit keeps data (the `data/` folder of a source checkout, or $KPSEMI_DATA, or ./data) and results, and
`save_atomic`, the one way it writes torch files (checkpoints, caches) so a killed writer never leaves half a file."""
import os

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


def save_atomic(obj, path):
    """torch.save to path + '.tmp', then rename over `path` (atomic on one file system)."""
    import torch
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)
