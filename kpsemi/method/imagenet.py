"""ImageNet weights for the HRNet backbone from a local file, for machines without internet (cluster nodes).

    python -m kpsemi train --preset paper ... --pretrained-weights hrnet_w32.safetensors --pretrained-sha256 HEX
    python -m kpsemi reproduce --table 1 --preset paper ... --pretrained-weights hrnet_w32.pth   # + a .sha256 file

The command line puts the file and its digest in the environment (KPSEMI_PRETRAINED_WEIGHTS,
KPSEMI_PRETRAINED_SHA256), where every run of the process, the grid's notebook kernels and the cluster jobs find
them. The digest is required: `--pretrained-sha256 HEX`, or a file PATH.sha256 beside the weights holding the hex
digest first (as `sha256sum PATH > PATH.sha256` writes it). A run whose config asks for pretrained weights
(`pretrained=True`, the paper preset) then checks the file's sha256 and loads it into timm's HighResolutionNet of its
backbone, all keys and shapes matching: a .safetensors file, or a torch file read with `weights_only=True` (a
state dict, or one under "state_dict" / "model"). Anything else ends with one line naming what is wrong.
metrics.json records `pretrained_loaded` and `pretrained_sha256`, and the run cache names such runs by the digest
(kpsemi/runs.py's run_dir). Without a file, timm downloads the weights when it can (models.make_backbone).
"""
import os

import torch
from safetensors.torch import load_file

from kpsemi.data.download import sha256_of
from kpsemi.errors import UserError

ENV_PATH = "KPSEMI_PRETRAINED_WEIGHTS"
ENV_SHA256 = "KPSEMI_PRETRAINED_SHA256"


def use(path, sha256=None):
    """Point this process and its children (notebook kernels, cluster jobs) at a local weights file, after checking
    it (see `local_file`); returns (path, digest)."""
    os.environ[ENV_PATH] = os.path.abspath(path)
    if sha256:
        os.environ[ENV_SHA256] = sha256.strip().lower()
    else:
        os.environ.pop(ENV_SHA256, None)
    found = local_file()
    verify(*found)
    return found


def local_file():
    """(path, expected sha256) of the local weights file named in the environment, or None when there is none."""
    path = os.environ.get(ENV_PATH)
    if not path:
        return None
    if not os.path.isfile(path):
        raise UserError(f"--pretrained-weights {path}: no such file")
    digest = os.environ.get(ENV_SHA256)
    if not digest and os.path.isfile(path + ".sha256"):
        with open(path + ".sha256") as f:
            digest = (f.read().split() or [""])[0]
    if not digest:
        raise UserError(f"--pretrained-weights {path}: no digest to check it against; give --pretrained-sha256 HEX "
                        f"or write it to {path}.sha256 (sha256sum {path} > {path}.sha256)")
    digest = digest.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UserError(f"--pretrained-sha256 {digest!r} is not a sha256 digest (64 hex digits)")
    return path, digest


def verify(path, expected):
    """A UserError unless the file's sha256 is `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise UserError(f"{path}: sha256 {actual} differs from the expected {expected}; the file is damaged or not "
                        "the weights meant")


def read_state_dict(path):
    """The tensors of a .safetensors file or of a torch file (weights_only=True; a state dict, or one kept under
    "state_dict" or "model")."""
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path}: not a weights file torch can read safely ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path}: holds no state dict of tensors")
    return sd


def load_into(net, name, path, digest):
    """Check the file and load it into `net` (a HighResolutionNet of backbone `name`): every key and shape must
    match. Returns what metrics.json records."""
    verify(path, digest)
    sd, own = read_state_dict(path), net.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise UserError(f"{path}: not weights of {name}: {len(missing)} keys missing (e.g. {missing[:2]}), "
                        f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of another shape "
                        f"(e.g. {wrong[:2]})")
    net.load_state_dict(sd)
    return {"loaded": True, "source": path, "sha256": digest}
