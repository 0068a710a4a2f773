"""Course material: one or two exercises at the end of each lesson notebook (01–10), a checker for each, and the
solutions in one place.

    from kpsemi import course
    course.show("ti")                 # the task: what to write, with the signature
    course.check("ti", my_ti)         # one line: PASS, or FAIL and what is wrong
    print(course.solution("ti"))      # the solution

    exercises   the tasks, the cases computed by hand, random inputs, kpsemi's implementation to compare with
    checks      check / show / solution
    solutions   the solutions, a few plain lines each

The exercises, by notebook: 01 heatmap, 02 supervised, 03 embedding and sc, 04 te and ti, 05 gap_closed,
06 unsup, 07 total, 08 elt, 09 pck, 10 neighbours.
"""
from kpsemi.course.checks import check, show, solution
from kpsemi.course.exercises import EXERCISES

__all__ = ["EXERCISES", "check", "show", "solution"]
