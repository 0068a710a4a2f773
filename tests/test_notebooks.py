"""Notebook conventions, and the metrics each notebook records in its last cell (smoke preset).

`python -m pytest` runs the notebooks first (nbval, testpaths order) with KPSEMI_PRESET=smoke; the tests here
read back what each one recorded. A notebook that has not run in this session is executed here with nbclient.
Every notebook needs an EXPECTED entry: the keys it records and their allowed range.
"""
import glob
import json
import math
import os

import pytest

from kpsemi import nbtools, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
PCT = (0.0, 100.0)
EXPECTED = {
    "00_overview": {"test_pck_supervised_5": PCT, "test_pck_ours_5": PCT, "test_pck_supervised_100": PCT,
                    "gap_closed_percent": (-math.inf, math.inf)},
}


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_there_are_notebooks_and_each_has_expectations():
    assert NOTEBOOKS
    assert sorted(map(_name, NOTEBOOKS)) == sorted(EXPECTED)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_name)
def test_conventions(nb):
    assert nbtools.problems(nb) == []


def _execute(nb):
    import nbformat
    from nbclient import NotebookClient
    book = nbformat.read(nb, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(nb)}}).execute()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_name)
def test_recorded_metrics(nb):
    name = _name(nb)
    path = os.path.join(report.notebook_dir(name), "metrics.json")
    if not os.path.exists(path):
        _execute(nb)
    doc = json.load(open(path))
    assert doc["notebook"] == name and doc["preset"] == os.environ["KPSEMI_PRESET"]
    for key, (lo, hi) in EXPECTED[name].items():
        v = doc["metrics"][key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi, (key, v)
