"""Where and in which precision the networks run: the default device and bf16 autocast on CUDA. Every trainer and
every evaluation of the kit (single- and multi-animal, PL, the weak classifier) uses these two."""
import torch


def default_device(device=None):
    """`device` when given, else "cuda" when a GPU is available, else "cpu"."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device, enabled=True):
    """bf16 autocast on CUDA (no grad scaler needed), a no-op elsewhere."""
    dev = torch.device(device).type
    return torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=enabled and dev == "cuda")
