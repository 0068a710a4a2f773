"""The paper's other Table 1 rows and Honari's Seq-MT, on the same keypoint network.

    heads    Gen's appearance decoder, Seq-MT's attribute head, and their losses
    pseudo   PL: pseudo-labels by multi-transform inference (data distillation)
"""
