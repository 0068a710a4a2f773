import json
import os

from kpsemi import runs
from kpsemi.repro import paper, grid as reproduce


def test_grids_match_the_papers_tables():
    t1 = reproduce.grid("1", "smoke", datasets=("lsp", "cub"), seeds=(0, 1, 2))
    # 7 rows x 5 fractions, PL, mean_teacher and dual not at 100 %; 2 datasets, 3 seeds
    assert len(t1) == 2 * (7 * 5 - 3) * 3
    t2 = reproduce.grid("2", "smoke")
    assert {c.row for c in t2} == set(paper.TABLE2_LSP)
    assert next(c for c in t2 if c.row == "te+sc").losses == ["sup", "sc", "te"]
    assert next(c for c in t2 if c.row == "supervised").losses == ["sup"]
    t3 = reproduce.grid("3", "smoke")
    assert sorted(c.unlabeled_fraction for c in t3 if c.row != "supervised") == [0.1, 0.2, 0.5, 1.0]
    assert all(c.labeled == 0.05 for c in t3)
    t4 = reproduce.grid("4", "smoke")
    assert {c.gt_in_unsup for c in t4} == {True, False}
    f3 = reproduce.grid("fig3", "smoke", fractions=(0.05,))
    assert len(f3) == 9 and {tuple(c.weights) for c in f3} == {("sc",), ("te",), ("ti",)}
    sq = reproduce.grid("seqmt", "smoke")
    assert len({c.id for c in t1 + t2 + t3 + t4 + f3 + sq}) == len(t1 + t2 + t3 + t4 + f3 + sq)


def test_paper_numbers_beside_ours(tmp_path):
    cells = reproduce.grid("1", "smoke", datasets=("lsp",), seeds=(0, 1), fractions=(0.05,))
    done = [(c, {"test_pck": 40.0 + c.split_seed * 2}) for c in cells]
    md = reproduce.render("1", done, str(tmp_path))
    # mean of 40 and 42 = 41, sample std 1.41; paper supervised LSP 5 %: 40.19
    assert "41.00 ± 1.41 (paper 40.19, Δ +0.81)" in md
    long = open(tmp_path / "table1_long.csv").read()
    assert "lsp,supervised,0.05,41.0,1.41,2,40.19,1.46,0.81" in long


def test_smoke_grid_runs_resumes_and_renders(tmp_path, smoke_dir):
    out = str(tmp_path / "t4")
    md = reproduce.main("4", "smoke", fractions=(0.05,), seeds=(0,), out=out, progress=False)
    cells = reproduce.grid("4", "smoke", fractions=(0.05,), seeds=(0,))
    nbs = [os.path.join(out, "cells", c.id, "12_single_run.ipynb") for c in cells]
    assert all(os.path.exists(p) for p in nbs)
    for c in cells:
        m = json.load(open(os.path.join(out, "cells", c.id, "metrics.json")))["metrics"]
        assert 0 <= m["test_pck"] <= 100 and m["steps"] > 0
    assert "with gt heatmaps" in md and "without gt heatmaps" in md
    # a second call finds every cell done and executes nothing
    stamps = [os.path.getmtime(p) for p in nbs]
    reproduce.main("4", "smoke", fractions=(0.05,), seeds=(0,), out=out, progress=False)
    assert [os.path.getmtime(p) for p in nbs] == stamps
    # a "killed" reproduction (one cell without metrics) re-runs only that cell
    os.remove(os.path.join(out, "cells", cells[1].id, "metrics.json"))
    reproduce.main("4", "smoke", fractions=(0.05,), seeds=(0,), out=out, progress=False)
    assert os.path.getmtime(nbs[0]) == stamps[0] and os.path.getmtime(nbs[1]) > stamps[1]
    # every cell records the run it read; a cell recorded from another run than its configuration resolves to now
    # (the kit's defaults for that row changed) is left out of the table and runs again
    path = os.path.join(out, "cells", cells[0].id, "metrics.json")
    doc = json.load(open(path))
    assert doc["metrics"]["run"] == os.path.basename(runs.run_dir(reproduce.cell_config(cells[0])))
    doc["metrics"]["run"] = "synthetic-sup+sc+te+ti-0.05-s0-smoke-0000000000"
    json.dump(doc, open(path, "w"))
    assert [c for c, _ in reproduce.collect(cells, out)] == cells[1:]
    assert reproduce.todo(cells, out, progress=False) == cells[:1]
    stamps = [os.path.getmtime(p) for p in nbs]
    reproduce.main("4", "smoke", fractions=(0.05,), seeds=(0,), out=out, progress=False)
    assert os.path.getmtime(nbs[0]) > stamps[0] and os.path.getmtime(nbs[1]) == stamps[1]
    assert [c for c, _ in reproduce.collect(cells, out)] == cells
