"""Smoke outputs say they only test the plumbing and claim no gain: quickstart's summary line, the notebooks'
records and the reproduced tables; the other presets report the share of the gap closed."""
import math

from kpsemi import config
from kpsemi.method import metrics
from kpsemi.repro import grid, quickstart, report


def test_gap_closed_by_hand():
    assert metrics.gap_closed(40.0, 50.0, 60.0) == 50.0                      # half of the 20-point gap
    assert metrics.gap_closed(40.0, 35.0, 60.0) == -25.0                     # worse than supervised
    assert math.isnan(metrics.gap_closed(40.0, 45.0, 40.0))                  # no gap to close


def test_quickstart_summary_claims_no_gain_at_smoke():
    smoke = quickstart.summary(config.get("smoke"), 10.58, 7.13, 9.35)
    assert "preset smoke" in smoke and config.plumbing_note("smoke") in smoke
    assert "closed" not in smoke and "%" not in smoke.replace(config.plumbing_note("smoke"), "")
    demo = quickstart.summary(config.get("demo"), 40.0, 50.0, 60.0)
    assert demo.endswith("Gap between supervised 5 % and 100 % closed by SC+TE+TI: 50 %.") and "plumbing" not in demo
    assert config.plumbing_note("demo") is None and config.plumbing_note("paper") is None


def test_a_smoke_record_prints_the_note(tmp_path, capsys):
    report.record({"test_pck": 7.13}, "00_overview", str(tmp_path / "smoke"), "smoke")
    assert config.plumbing_note("smoke") in capsys.readouterr().out
    report.record({"test_pck": 47.1}, "00_overview", str(tmp_path / "demo"), "demo")
    assert "plumbing" not in capsys.readouterr().out


class NoCells:
    """An executor that runs nothing (the table is rendered from whatever cells are done: none)."""

    def run(self, cells, out):
        self.cells = cells


def test_a_reproduced_smoke_table_carries_the_note(tmp_path):
    md = grid.main("4", "smoke", fractions=(0.05,), out=str(tmp_path), executor=NoCells())
    assert md.endswith(config.plumbing_note("smoke"))
    assert config.plumbing_note("smoke") in open(tmp_path / "table4.md").read()
    md = grid.main("4", "demo", fractions=(0.05,), out=str(tmp_path / "demo"), executor=NoCells())
    assert "plumbing" not in md and "plumbing" not in open(tmp_path / "demo" / "table4.md").read()
