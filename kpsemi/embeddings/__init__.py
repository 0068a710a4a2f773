"""What the semantic keypoint representations learned (paper Fig. 4), notebook 10.

    analysis   extraction of z_i, k-NN accuracy, left/right confusion, t-SNE, silhouettes, figures
    explorer   the interactive t-SNE explorer for JupyterLab (jupyter-scatter)
    trained    any run the kit trained: its checkpoints, the data it trained on, its embeddings as CSV / npz

    from kpsemi import embeddings
    embeddings.explore(["runs/sup-5", "runs/ours-5"]).show()     # the explorer on their test data
    embeddings.export(["runs/ours-5"], None, "z.csv")             # z_i with image ids and keypoint names
"""
from kpsemi.embeddings.explorer import explore
from kpsemi.embeddings.trained import export

__all__ = ["explore", "export"]
