"""Course material: checkers for the notebooks' exercises and their solutions.

The exercises, their checkers and solutions are still to come; the package holds no code yet.
"""
