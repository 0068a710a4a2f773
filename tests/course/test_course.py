"""The exercises' checkers: every checker passes kpsemi's own implementation and the solution, fails each usual
mistake with its hint, reports whatever a function returns or raises in one line, and every exercise sits in its
lesson notebook."""
import os

import numpy as np
import pytest
import torch

from kpsemi import course, nbtools
from kpsemi.course import solutions
from kpsemi.embeddings import analysis
from kpsemi.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = list(course.EXERCISES)


@pytest.mark.parametrize("name", NAMES)
def test_the_package_and_the_solution_pass(name, capsys):
    e = course.EXERCISES[name]
    assert course.check(name, e.reference)
    assert course.check(name, getattr(solutions, name))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [lines[0]] * 2 and lines[0].startswith(f"{name}: PASS (") and e.source in lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_every_usual_mistake_fails_with_its_hint(name, capsys):
    e = course.EXERCISES[name]
    assert e.mistakes
    for wrong, what in e.mistakes:
        assert not course.check(name, wrong)
        line = capsys.readouterr().out.strip()
        assert "\n" not in line and line.startswith(f"{name}: FAIL") and line.endswith(f"Hint: {what}"), line


def test_the_hand_cases_by_hand():
    """The cases the checkers start with, recomputed here from their descriptions."""
    cases = {n: course.EXERCISES[n].cases for n in NAMES}
    assert cases["ti"][0].expected == pytest.approx(((0.6 - 0.8) ** 2 * 2 + 2 ** 2) / 2)
    assert cases["sc"][0].expected == pytest.approx((np.log(2) + np.log(4 / 3)) / 2)
    assert cases["supervised"][0].expected == (1 + 4 + 0 + 0) / 4
    assert cases["te"][0].expected == 1 / 4 and cases["elt"][0].expected == 4 ** 2 / 4
    assert cases["pck"][0].expected == pytest.approx(100 * 2 / 3)
    assert cases["total"][0].expected == 0.002 * 1e3 + 2 * 0.5 + 0.01 * 1e2
    hm = cases["heatmap"][0].expected
    assert hm[0, 0, 2, 1] == 1 and hm[0, 0, 2, 2] == pytest.approx(np.exp(-0.5)) and hm[0, 1].abs().sum() == 0
    assert cases["embedding"][0].expected.tolist() == [[[3.0, 2.0]]]


def test_neighbours_solution_is_the_embeddings_knn():
    """kpsemi.course cannot import kpsemi.embeddings (both are plug-ins, tests/test_architecture.py): its reference
    for notebook 10 is the solution, which must be the package's k-NN."""
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        z, image = torch.randn(40, 8, generator=g, dtype=torch.float64), torch.arange(8).repeat_interleave(5)
        want = analysis.neighbours(z.numpy(), image.numpy(), k=4)
        assert np.array_equal(solutions.neighbours(z, image, 4).numpy(), want)


def test_a_checker_reports_and_never_raises(capsys):
    assert not course.check("ti", lambda z, z_g: None)
    assert not course.check("ti", lambda z, z_g: z.sum(-1))
    assert not course.check("ti", lambda z, z_g: 1 / 0)
    assert not course.check("ti", lambda z, z_g: "0.5")
    assert not course.check("total", lambda values, weights, names: values["nope"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith(("ti: FAIL", "total: FAIL")) for line in lines)
    assert lines[0].endswith("returned None (not written yet? return the result)")
    assert lines[1].endswith("returned shape (1, 2), expected a scalar")
    assert lines[2].endswith("raised ZeroDivisionError: division by zero")
    assert lines[3].endswith("returned a str, not a number or tensor")
    assert lines[4].endswith("raised KeyError: 'nope'")


def test_a_function_that_is_right_by_hand_but_wrong_elsewhere_fails_on_random_input(capsys):
    def ti_for_two_channels(z, z_g):                      # right when C = 2 (the hand case), wrong otherwise
        return solutions.ti(z[..., :2], z_g[..., :2])
    assert not course.check("ti", ti_for_two_channels)
    line = capsys.readouterr().out
    assert "FAIL on random input 1 of 20 (the cases by hand passed)" in line and "transformation_invariance" in line


def test_the_input_is_the_checkers_own():
    """A function that writes into its input does not change what the package's reference sees."""
    def in_place(z, z_g):
        out = solutions.ti(z, z_g)
        z.zero_()
        return out
    assert course.check("ti", in_place, verbose=False)


def test_show_solution_and_unknown_names(capsys):
    course.show("te")
    assert capsys.readouterr().out.startswith("te (notebook 04_equivariance_invariance): te(heatmaps_g, unsup, H)")
    assert course.solution("elt").startswith("def elt(heatmaps_g, unsup, H):")
    with pytest.raises(UserError, match="no exercise 'xyz'; the exercises are heatmap, supervised"):
        course.check("xyz", print)


def test_every_lesson_ends_with_its_exercises():
    by_notebook = {}
    for e in course.EXERCISES.values():
        by_notebook.setdefault(e.notebook, []).append(e.name)
    assert sorted(by_notebook) == sorted(f for f in (os.path.splitext(p)[0] for p in os.listdir(
        os.path.join(ROOT, "notebooks", "src"))) if "01" <= f[:2] <= "10")
    for nb, names in by_notebook.items():
        cells = nbtools.parse(open(os.path.join(ROOT, "notebooks", "src", nb + ".py")).read())
        code = [src for kind, src, _ in cells if kind == "code"]
        for name in names:
            i = next((j for j, src in enumerate(code) if f'course.check("{name}"' in src), None)
            assert i is not None, f"{nb} has no course.check({name!r}, ...)"
            assert i >= len(code) - 1 - len(names), f"{nb}: the {name} exercise is not at the end"
