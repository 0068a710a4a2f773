"""The paper's other Table 1 rows and Honari's Seq-MT, as plug-ins of the method (which never imports them).

    losses   gen (Jakab et al.), attr (Seq-MT attributes), elt_lm (Honari's landmark ELT): registered in the method's
             loss registry (kpsemi/method/losses.py) with what each needs, when this package is imported
    heads    their extra heads on the KLN (appearance decoder, attribute head) and the outputs they add to a step
    pseudo   PL: pseudo-labels by multi-transform inference; the two-stage run itself is kpsemi/runs.py's "pl"

`import kpsemi.baselines` (kpsemi/runs.py does) makes the losses available to every run.
"""
from kpsemi.baselines import losses  # noqa: F401  (registers gen, attr and elt_lm)
