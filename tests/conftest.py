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


@pytest.fixture(scope="session")
def smoke_run(smoke_dir, tmp_path_factory):
    """A tiny finished run on the embedded smoke set (supervised, 4 steps): a run folder as `kpsemi train` writes."""
    from kpsemi import config, runs
    out = str(tmp_path_factory.mktemp("smoke-run") / "sup")
    runs.run(config.get("smoke", losses=("sup",), max_steps=4, eval_every=2), out, progress=False)
    return out
