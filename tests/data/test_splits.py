import json

import pytest

from kpsemi.data import splits
from kpsemi.errors import DataError


def test_nested_seeded_and_sized():
    ids = [f"img{i}" for i in range(1000)]
    doc = splits.make(ids)
    s = splits.Splits(doc, ids)
    for seed in (0, 1, 2):
        prev = set()
        for f in splits.FRACTIONS:
            lab = set(s.labeled(f, seed).tolist())
            assert len(lab) == round(f * 1000)
            assert prev <= lab
            prev = lab
    assert set(s.labeled(0.05, 0).tolist()) != set(s.labeled(0.05, 1).tolist())
    assert splits.make(ids) == doc  # deterministic
    # unlabeled pool at 5 % labels: disjoint from the labels, nested 10 -> 100 %
    lab = set(s.labeled(0.05, 0).tolist())
    pools = [set(s.unlabeled(0.05, 0, f).tolist()) for f in splits.UNLABELED_FRACTIONS]
    assert [len(p) for p in pools] == [95, 190, 475, 950]
    assert all(not (p & lab) for p in pools)
    assert pools[0] <= pools[1] <= pools[2] <= pools[3]
    with pytest.raises(DataError):
        s.unlabeled(0.2, 0, 0.5)
    # other fractions follow the same seeded order (nested with the standard ones)
    assert len(s.labeled(0.01, 0)) == 10 and set(s.labeled(0.01, 0).tolist()) <= set(s.labeled(0.05, 0).tolist())
    with pytest.raises(DataError):
        s.labeled(0.1, 7)


def test_written_once_and_mismatch_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSEMI_DATA", str(tmp_path))
    ids = [str(i) for i in range(40)]
    s = splits.get("toy", ids)
    p = tmp_path / "splits" / "toy.json"
    assert json.loads(p.read_text())["labeled"]["0.05"]["0"] == s.doc["labeled"]["0.05"]["0"]
    assert splits.get("toy", ids).doc == s.doc
    with pytest.raises(DataError, match="different training set"):
        splits.get("toy", ids[:-1])
