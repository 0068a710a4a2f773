"""check_device: a device name is checked before anything runs on it, in one line naming the option."""
import pytest
import torch

from kpsemi.errors import UserError
from kpsemi.method.device import check_device


def test_known_devices_pass_and_unknown_names_fail():
    assert check_device(None) is None and check_device("cpu") == "cpu" and check_device("cpu:0") == "cpu:0"
    with pytest.raises(UserError, match=r"^--device 'gpu0': not a device name \(cpu, cuda, cuda:0, mps\)$"):
        check_device("gpu0")


def test_cuda_is_checked_against_the_gpus_torch_sees():
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n:
        assert check_device("cuda") == "cuda" and check_device(f"cuda:{n - 1}") == f"cuda:{n - 1}"
        with pytest.raises(UserError, match=rf"^--device cuda:{n}: only {n} CUDA device\(s\) here$"):
            check_device(f"cuda:{n}")
    else:
        with pytest.raises(UserError, match=r"^--device cuda: this machine has no CUDA GPU that PyTorch can use"):
            check_device("cuda")
