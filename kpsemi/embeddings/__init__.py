"""What the semantic keypoint representations learned (paper Fig. 4), notebook 10.

    analysis   extraction of z_i, k-NN accuracy, left/right confusion, t-SNE, silhouettes, figures
    explorer   the interactive t-SNE explorer for JupyterLab
"""
