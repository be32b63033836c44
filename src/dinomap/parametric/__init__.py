"""Neural mappers that place new points on a 2-D map: parametric UMAP and a t-SNE approximator.

Both are PyTorch MLPs trained by one shared loop (:mod:`dinomap.parametric.train`), run on CUDA
when available, save to a directory (``state_dict`` + JSON config) and export as a plain
``nn.Module`` (:meth:`~dinomap.parametric.ParametricUMAP.to_torch_module`).
"""

from __future__ import annotations

from dinomap._device import resolve_device
from dinomap.parametric.tsne_nn import TSNEApproximator, knn_agreement
from dinomap.parametric.umap import ParametricUMAP

__all__ = ["ParametricUMAP", "TSNEApproximator", "knn_agreement", "resolve_device"]
