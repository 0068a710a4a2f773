"""Shared fixtures: the smoke-size embedded dataset (generated once per session) and paths to ../shared."""
import os

import pytest

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets"))


def shared(name):
    """Path of a ../shared dataset, or skip the test cleanly when this checkout has no ../shared."""
    p = os.path.join(SHARED, name)
    if not os.path.isdir(p):
        pytest.skip(f"../shared/datasets/{name} is not present (a user's clone has no ../shared)")
    return p


@pytest.fixture(scope="session")
def smoke_dir():
    from kpsemi.data.synthetic import writer as synth
    return synth.ensure("smoke", 0, progress=False)
