"""The paper's other Table 1 rows, Honari's Seq-MT and the methods after the paper, as plug-ins of the method (which
never imports them).

    losses        gen (Jakab et al.), attr (Seq-MT attributes), elt_lm (Honari's landmark ELT), and mt, dual, cons:
                  registered in the method's loss registry (kpsemi/method/losses.py) with what each needs, when this
                  package is imported
    heads         their extra heads on the KLN (appearance decoder, attribute head) and the outputs they add to a step
    pseudo        PL: pseudo-labels by multi-transform inference; the two-stage run itself is kpsemi/runs.py's "pl"
    views         after the paper: strong / hard views, heatmaps moved between views, Joint Cutout, heatmap energy,
                  and the trainer the three methods below share
    mean_teacher  an EMA teacher on the weak view teaches the student on a strong view
    dual          Xie et al. (ICCV 2021): two networks, each one's easy-view heatmaps teach the other's hard view
    consistency   plain consistency between two equally hard views: the setting that collapses (notebook 13)

`import kpsemi.baselines` (kpsemi/runs.py does) makes the losses available to every run; `TRAINERS` maps the methods
after the paper (config.method) to their trainers, which kpsemi/runs.py runs.
"""
from kpsemi.baselines import losses  # noqa: F401  (registers gen, attr, elt_lm, mt, dual and cons)
from kpsemi.baselines.consistency import ConsistencyTrainer
from kpsemi.baselines.dual import DualTrainer
from kpsemi.baselines.mean_teacher import MeanTeacherTrainer

TRAINERS = {"mean_teacher": MeanTeacherTrainer, "dual": DualTrainer, "consistency": ConsistencyTrainer}
