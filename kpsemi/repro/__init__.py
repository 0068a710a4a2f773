"""Reproduction: the main job, the paper's tables as grids of runs, the papers' numbers, recorded metrics.

    quickstart   `python -m kpsemi quickstart`: supervised vs the method at 5 % labels vs supervised at 100 %
    grid         `python -m kpsemi reproduce`: a table as a grid of papermill runs of notebooks/12_single_run
    paper        the numbers the papers report
    report       the metrics record every notebook leaves behind
"""
