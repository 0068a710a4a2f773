"""Checkers of the lesson exercises: one call, one line that says PASS or FAIL and, on a failure, what is wrong.

    from kpsemi import course
    course.show("ti")                 # the task and the signature
    course.check("ti", my_ti)         # ti: PASS (1 case computed by hand, 20 random inputs agree with kpsemi ...)
    print(course.solution("ti"))      # the solution's source (kpsemi/course/solutions.py holds them all)

A check runs the function on the exercise's cases computed by hand first (their failure line shows the case in
words and, where the answer matches a usual mistake, names it), then on random inputs against kpsemi's own
implementation with torch.allclose. The function gets copies of the inputs, and whatever it raises or returns is
reported, never raised: a checker cell always runs to its end.
"""
import inspect

import numpy as np
import torch

from kpsemi.course import solutions
from kpsemi.course.exercises import EXERCISES
from kpsemi.errors import UserError

TRIALS = 20


def exercise(name):
    """The Exercise called `name` (a UserError listing them otherwise)."""
    if name not in EXERCISES:
        raise UserError(f"no exercise {name!r}; the exercises are {', '.join(EXERCISES)}")
    return EXERCISES[name]


def show(name):
    """Print the notebook, the task and the signature of an exercise."""
    e = exercise(name)
    print(f"{e.name} (notebook {e.notebook}): {e.task}")


def solution(name):
    """The source of the exercise's solution (kpsemi/course/solutions.py)."""
    exercise(name)
    return inspect.getsource(getattr(solutions, name))


def _copy(v):
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(v, dict):
        return dict(v)
    return v


def _tensor(v):
    """A returned value as a float64 (or int64) tensor; None where it is not a number, array or tensor."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.long() if not v.is_floating_point() and v.dtype != torch.bool else v.double()
    if isinstance(v, (int, float, np.ndarray, np.generic)) and not isinstance(v, bool):
        a = np.asarray(v)
        return torch.as_tensor(a.astype(np.int64 if a.dtype.kind in "iu" else np.float64))
    return None


def _shape(t):
    return "a scalar" if t.dim() == 0 else f"shape {tuple(t.shape)}"


def _show(t):
    if t.numel() == 1:
        return f"{float(t.reshape(())):.6g}"
    return np.array2string(t.numpy(), precision=4, separator=", ").replace("\n", "")


def _compare(got, want, atol):
    """None when `got` (a returned value) equals `want`, else what is wrong, in words."""
    if got is None:
        return "returned None (not written yet? return the result)"
    g, w = _tensor(got), _tensor(want)
    if g is None:
        return f"returned a {type(got).__name__}, not a number or tensor"
    if g.numel() == 1 and w.numel() == 1:
        g, w = g.reshape(()), w.reshape(())
    if g.shape != w.shape:
        return f"returned {_shape(g)}, expected {_shape(w)}"
    if torch.allclose(g.double(), w.double(), rtol=1e-4, atol=atol, equal_nan=True):
        return None
    if g.numel() <= 6:
        return f"returned {_show(g)}, expected {_show(w)}"
    diff = (g.double() - w.double()).abs().nan_to_num(float("inf"))
    at = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), tuple(g.shape)))
    return (f"the {_shape(g)} result differs most at index {at}: {_show(g[at])} there, expected {_show(w[at])} "
            f"({int((diff > atol + 1e-4 * w.double().abs()).sum())} of {g.numel()} entries differ)")


def _call(fn, args):
    """(value, None) of fn(*copies of args), or (None, what it raised)."""
    try:
        return fn(*[_copy(a) for a in args]), None
    except Exception as e:  # the student's code: report whatever it raises
        return None, f"raised {type(e).__name__}: {e}"


def _mistake(e, args, got):
    """What the usual mistake that gives `got` on these args does wrong, or None."""
    for wrong, what in e.mistakes:
        value, err = _call(wrong, args)
        if err is None and _compare(got, value, e.atol) is None:
            return what
    return None


def check(name, fn, trials=TRIALS, seed=0, verbose=True):
    """Test `fn` on the exercise `name`: its cases computed by hand, then `trials` random inputs against kpsemi.
    Prints one line (PASS or FAIL and what is wrong) unless verbose=False; returns True when it passes."""
    e = exercise(name)
    line = None
    for i, case in enumerate(e.cases, 1):
        got, err = _call(fn, case.args)
        problem = err or _compare(got, case.expected, e.atol)
        if problem:
            hint = _mistake(e, case.args, got) if err is None else None
            line = (f"{name}: FAIL on the case computed by hand ({case.what}): {problem}"
                    + (f". Hint: {hint}" if hint else ""))
            break
    g = torch.Generator().manual_seed(seed)
    for t in range(trials if line is None else 0):
        args = e.random(g)
        got, err = _call(fn, args)
        problem = err or _compare(got, e.reference(*args), e.atol)
        if problem:
            hint = _mistake(e, args, got) if err is None else None
            line = (f"{name}: FAIL on random input {t + 1} of {trials} (the cases by hand passed), compared with "
                    f"{e.source}: {problem}" + (f". Hint: {hint}" if hint else ""))
            break
    if line is None:
        n = len(e.cases)
        line = (f"{name}: PASS ({n} case{'s' * (n > 1)} computed by hand, {trials} random inputs agree with "
                f"{e.source})")
    if verbose:
        print(line)
    return line.startswith(f"{name}: PASS")
