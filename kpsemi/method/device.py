"""Where and in which precision the networks run: the default device, a device name checked before use, and bf16
autocast on CUDA. Every trainer and every evaluation of the kit (single- and multi-animal, PL, the weak classifier)
uses these."""
import torch

from kpsemi.errors import UserError


def default_device(device=None):
    """`device` when given, else "cuda" when a GPU is available, else "cpu"."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device, enabled=True):
    """bf16 autocast on CUDA (no grad scaler needed), a no-op elsewhere."""
    dev = torch.device(device).type
    return torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=enabled and dev == "cuda")


def check_device(device):
    """`device` checked (None stays None): a name torch knows, and CUDA or MPS only where torch can use them; else
    one UserError line instead of torch's traceback on first use."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: not a device name (cpu, cuda, cuda:0, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: this machine has no CUDA GPU that PyTorch can use (torch "
                            f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu or "
                            "leave --device out")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: Apple's MPS backend is not available on this machine")
    return str(dev)
