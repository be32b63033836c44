"""Parametric UMAP in PyTorch: an MLP encoder trained with the UMAP loss.

The graph is umap-learn's fuzzy simplicial set of the raw inputs, as ``umap.UMAP`` builds it
(exact neighbours up to 4,096 points, pynndescent above; the encoder itself sees standardised
inputs); the low-dimensional similarity is UMAP's curve ``1 / (1 + a d^(2b))`` with
``a, b`` fitted from ``min_dist``. Each epoch draws as many edges as classic UMAP processes per
epoch, with probability proportional to their weight; every edge comes with
``negative_sample_rate`` negatives paired inside its batch, so a batch of ``B`` edges costs one
forward pass over ``2B`` points. Before that, the encoder is fitted for a few epochs to the
first principal components of the data (scaled like UMAP's spectral initialisation), which gives
a stable global layout.

``backend="keras"`` delegates to umap-learn's TensorFlow ``ParametricUMAP`` instead.

The graph and its edges are built in :mod:`dinomap.parametric._umap_graph`, the Keras backend
lives in :mod:`dinomap.parametric._keras`; their public names stay importable from here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinomap._device import TRAIN_PRECISIONS, resolve_device, training_precision
from dinomap._umap import import_umap
from dinomap._validation import (
    check_choice,
    check_embeddings,
    check_positive_float,
    check_positive_int,
)
from dinomap.exceptions import DinomapError, InvalidParameterError
from dinomap.maps.progress import stage
from dinomap.parametric._base import NeuralMapper
from dinomap.parametric._keras import KERAS_HINT, fit_keras, load_keras, write_keras_mapper
from dinomap.parametric._umap_graph import (
    check_graph,
    edge_batches,
    fuzzy_graph,
    graph_edges,
    pca_target,
    umap_loss,
)
from dinomap.parametric.nets import (
    MapperNet,
    Standardizer,
    build_mlp,
    check_inputs,
    fit_inputs,
    resolve_hidden,
)
from dinomap.parametric.train import make_generator, seed_from_random_state, train
from dinomap.reduce._persist import read_mapper_config

__all__ = ["BACKENDS", "KERAS_HINT", "ParametricUMAP", "fuzzy_graph"]

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "keras")
INITS = ("auto", "reference", "pca", "random")
INIT_STEPS = 100
#: Regression steps (batches of 512) on the reference map with ``init="reference"``: 80
#: epochs, at most this many.
REFERENCE_INIT_STEPS = 10_000
REFERENCE_INIT_EPOCHS = 80
AUTO_STEPS = 3_000


class ParametricUMAP(NeuralMapper):
    """UMAP with an MLP encoder, trained in PyTorch (CUDA when available).

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the map.
    n_neighbors : int, default=15
        Size of the neighbourhoods of the fuzzy graph.
    min_dist : float, default=0.1
        UMAP's minimum distance between points in the map (sets the ``a, b`` curve).
    hidden : str or sequence of int, default="keras-umap"
        Widths of the encoder's hidden layers (ReLU), or a name of
        :data:`dinomap.parametric.nets.NETS`: ``"keras-umap"`` (100-100-100, umap-learn's Keras
        encoder: as faithful as 256-256 on Fashion-MNIST at a third of the cost per step),
        ``"wide"``, ``"nnp"``, or widths such as ``(256, 256)`` (the default before).
    n_epochs : int or None, default=None
        Epochs of the UMAP loss; each draws as many weighted edges as the graph's total weight
        over its largest weight (the edges classic UMAP visits per epoch). ``None`` picks the
        number giving about ``max_steps`` gradient steps, between 5 and 200 epochs.
    max_steps : int, default=AUTO_STEPS
        Budget of gradient steps when ``n_epochs`` is ``None`` (the cost then stays the same
        whatever ``n``; the graph is the part that grows). 3,000 meets the fidelity bars on
        Fashion-MNIST 70k in 54 s with bf16; 20,000 (``make_maps(quality="faithful")``) is
        closer to UMAP, 500 fell well short (docs/maps.md).
    batch_size : int, default=4096
        Edges per gradient step.
    learning_rate : float, default=3e-3
        Adam's starting step size (decayed linearly, as UMAP anneals its own).
    negative_sample_rate : int, default=5
        Negative pairs per edge.
    init : {"auto", "reference", "pca", "random"}, default="auto"
        How the encoder starts. ``"reference"`` first regresses the map given to ``fit`` as
        ``init_coords`` (``make_maps`` gives UMAP's map of the training points) for
        :data:`REFERENCE_INIT_STEPS` steps, then trains on the UMAP loss: the layout of the
        clusters is UMAP's from the start and the loss only has to tighten them. ``"pca"``
        first fits the encoder to the data's principal components for a few epochs;
        ``"auto"``: ``"reference"`` when ``init_coords`` is given, else ``"pca"``.
    input_scaling : {"global", "column"}, default="global"
        How the encoder's inputs are scaled: ``"global"`` centres them and divides by one
        shared scale (the geometry of the embedding space, which the fuzzy graph describes, is
        kept); ``"column"`` standardises each column.
    input_pca : int or None, default=None
        Feed the encoder the first ``input_pca`` principal components of the inputs (a fixed
        projection folded into its first layer on export; the graph still uses all of them).
    random_state : int, numpy Generator or None, default=None
        Seeds neighbours, initial weights and sampling. With an int, fits on the CPU are
        identical run after run; above 4,096 points that runs the neighbour search on one
        thread (as ``umap.UMAP`` does with a seed); ``None`` lets it use every core.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Arithmetic of the hidden layers while training (torch backend): ``"auto"`` is bf16 on
        CUDA and on CPUs with native bf16 (``avx512_bf16``, AMX), fp32 elsewhere; the output
        layer, the loss and the saved encoder stay fp32.
    backend : {"torch", "keras"}, default="torch"
        ``"keras"`` wraps ``umap.parametric_umap.ParametricUMAP`` (needs TensorFlow:
        ``pip install "dinomap[keras]"``); it ignores ``hidden``, ``learning_rate``, ``init``
        and ``device``, caps ``batch_size`` at a tenth of the points (umap-learn's loop would
        not end otherwise), and has no ``to_torch_module``.
    verbose : bool, default=False
        Show progress bars.

    Attributes
    ----------
    net_ : MapperNet
        The trained encoder (torch backend).
    embedding_ : numpy.ndarray
        The map of the training data.
    a_, b_ : float
        Parameters of the similarity curve.
    n_epochs_ : int
        Epochs run.
    n_edges_ : int
        Edges of the fuzzy graph.
    history_ : list of dict
        Per-epoch loss.
    fit_seconds_, graph_seconds_ : float
        Wall time of the whole fit and of the graph construction.
    device_ : torch.device
        Where the encoder lives.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 16)).astype("float32")
    >>> pumap = ParametricUMAP(n_epochs=2, hidden=(32,), random_state=0, device="cpu")
    >>> pumap.fit_transform(X).shape  # doctest: +SKIP
    (300, 2)
    """

    method: ClassVar[str] = "parametric_umap"
    display_name: ClassVar[str] = "Parametric UMAP"

    _saved_attributes: ClassVar[tuple[str, ...]] = (
        "a_",
        "b_",
        "n_epochs_",
        "n_edges_",
        "fit_seconds_",
        "graph_seconds_",
        "precision_",
    )

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        hidden: str | tuple[int, ...] = "keras-umap",
        n_epochs: int | None = None,
        max_steps: int = AUTO_STEPS,
        batch_size: int = 4096,
        learning_rate: float = 3e-3,
        negative_sample_rate: int = 5,
        init: str = "auto",
        input_scaling: str = "global",
        input_pca: int | None = None,
        random_state: Any = None,
        device: str = "auto",
        precision: str = "auto",
        backend: str = "torch",
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.hidden = hidden
        self.n_epochs = n_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.negative_sample_rate = negative_sample_rate
        self.init = init
        self.input_scaling = input_scaling
        self.input_pca = input_pca
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.backend = backend
        self.verbose = verbose

    # ----------------------------------------------------------------- fitting
    def _checked_params(self, n_samples: int) -> dict[str, Any]:
        """Every parameter checked (with an error that names it) and converted."""
        check_positive_int("n_samples", n_samples, minimum=3)
        min_dist = check_positive_float("min_dist", self.min_dist, allow_zero=True)
        if min_dist > 1.0:
            raise InvalidParameterError(f"min_dist must be in [0, 1]; got {self.min_dist!r}.")
        n_neighbors = check_positive_int("n_neighbors", self.n_neighbors, minimum=2)
        if n_neighbors >= n_samples:
            raise InvalidParameterError(
                f"n_neighbors must be smaller than the number of samples ({n_samples}); "
                f"got {n_neighbors}."
            )
        if self.n_epochs is not None:
            check_positive_int("n_epochs", self.n_epochs)
        return {
            "max_steps": check_positive_int("max_steps", self.max_steps),
            "backend": check_choice("backend", self.backend, BACKENDS),
            "precision": check_choice("precision", self.precision, TRAIN_PRECISIONS),
            "n_components": check_positive_int("n_components", self.n_components),
            "n_neighbors": n_neighbors,
            "min_dist": min_dist,
            "batch_size": check_positive_int("batch_size", self.batch_size),
            "lr": check_positive_float("learning_rate", self.learning_rate),
            "neg_rate": check_positive_int("negative_sample_rate", self.negative_sample_rate),
            "init": check_choice("init", self.init, INITS),
            **check_inputs(self.input_scaling, self.input_pca),
            "hidden": resolve_hidden(self.hidden),
        }

    def validate(self, n_samples: int) -> None:
        """Check every parameter against a data set of ``n_samples`` points, before any work."""
        self._checked_params(n_samples)

    def fit(
        self, X: Any, y: Any = None, *, graph: Any = None, init_coords: Any = None
    ) -> ParametricUMAP:
        """Fit the encoder to ``X`` (n, d).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        graph : scipy.sparse matrix, optional
            A fuzzy graph of ``X`` already computed (for instance ``umap.UMAP().graph_`` with
            the same ``n_neighbors``), to skip building it again (torch backend).
        init_coords : array-like of shape (n_samples, n_components), optional
            A map of ``X`` to start from (``init="auto"`` or ``"reference"``): UMAP's.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        Xa = check_embeddings(X, name="X", min_samples=3)
        n = Xa.shape[0]
        p = self._checked_params(n)
        backend, n_components, n_neighbors = p["backend"], p["n_components"], p["n_neighbors"]
        min_dist, batch_size, lr = p["min_dist"], p["batch_size"], p["lr"]
        neg_rate, init, hidden = p["neg_rate"], p["init"], p["hidden"]
        # A refit with the other backend must not leave the previous model answering.
        for stale in ("keras_model_", "net_"):
            self.__dict__.pop(stale, None)
        if backend == "keras":
            self.precision_ = "fp32"
            return self._fit_keras(Xa, batch_size, start)

        device = resolve_device(self.device)
        self.precision_ = training_precision(p["precision"], device)
        seed = seed_from_random_state(self.random_state)
        x_std, proj, Xs = fit_inputs(Xa, p["scaling"], p["pca"], seed)

        with stage("parametric_umap: graph"):
            coo = self._graph(Xa, graph, n_neighbors, seed)
        import_umap()
        from umap.umap_ import find_ab_params

        a, b = (float(v) for v in find_ab_params(1.0, min_dist))
        edges = graph_edges(coo)
        n_epochs = self.n_epochs
        if n_epochs is None:
            n_epochs = _auto_epochs(edges.per_epoch, batch_size, p["max_steps"])

        mlp = build_mlp(Xs.shape[1], hidden, n_components, generator=make_generator(seed))
        net = MapperNet(mlp, x_std, Standardizer.identity(n_components), proj).to(device)
        X_dev = torch.from_numpy(Xs).to(device)
        gen = make_generator(seed + 1, device)
        history: list[dict[str, float]] = []

        with stage("parametric_umap: initial layout"):
            history += self._init_layout(net.mlp, X_dev, Xa, init, init_coords, gen, device, lr,
                                         seed)  # fmt: skip
        with stage("parametric_umap: UMAP loss steps"):
            result = train(
                net.mlp,
                edge_batches(edges, X_dev, gen, device, batch_size, neg_rate),
                umap_loss(a, b, neg_rate),
                n_epochs=n_epochs,
                learning_rate=lr,
                lr_schedule="linear",
                verbose=bool(self.verbose),
                desc="parametric UMAP",
                precision=self.precision_,
            )
        history += [{**h, "phase": "umap"} for h in result.history]  # type: ignore[dict-item]
        self.net_ = net.eval()
        self.device_ = device
        self.n_features_in_ = int(Xa.shape[1])
        self.a_, self.b_ = a, b
        self.n_edges_ = int(edges.heads.shape[0])
        self.n_epochs_ = int(result.epochs_run)
        self.history_ = history
        self.graph_ = coo
        self.embedding_ = self._predict(Xa)
        self.fit_seconds_ = time.perf_counter() - start
        logger.info(
            "parametric UMAP: %d points, %d epochs x %d edges in %.1f s on %s",
            n,
            n_epochs,
            edges.per_epoch,
            self.fit_seconds_,
            device,
        )
        return self

    def _init_layout(
        self,
        mlp: nn.Module,
        X_dev: torch.Tensor,
        Xa: np.ndarray,
        init: str,
        init_coords: Any,
        gen: torch.Generator,
        device: torch.device,
        lr: float,
        seed: int,
    ) -> list[dict[str, Any]]:
        """Start the encoder as ``init`` says (before the UMAP loss); its training history."""
        n, n_components = Xa.shape[0], int(self.n_components)
        if init == "auto":
            init = "reference" if init_coords is not None else "pca"
        if init == "reference":
            if init_coords is None:
                raise InvalidParameterError(
                    "init='reference' starts from a map: pass fit(X, init_coords=Y) with Y "
                    "(n_samples, n_components), e.g. UMAP's map of X."
                )
            coords = check_embeddings(init_coords, name="init_coords")
            if coords.shape != (n, n_components):
                raise InvalidParameterError(
                    f"init_coords must have shape ({n}, {n_components}); got {coords.shape}."
                )
            target = torch.from_numpy(coords).to(device)
            return self._pretrain(mlp, X_dev, target, gen, device, lr, reference=True)
        if init == "pca":
            target = torch.from_numpy(pca_target(Xa, n_components, seed)).to(device)
            return self._pretrain(mlp, X_dev, target, gen, device, lr)
        return []

    def _graph(self, Xa: np.ndarray, graph: Any, n_neighbors: int, seed: int) -> Any:
        """The fuzzy graph of ``Xa`` as COO: ``graph`` checked when given, else built."""
        t0 = time.perf_counter()
        if graph is None:
            coo = fuzzy_graph(
                Xa,
                n_neighbors,
                seed,
                deterministic=self.random_state is not None,
                verbose=bool(self.verbose),
            )
        else:
            coo = check_graph(graph, Xa.shape[0])
        self.graph_seconds_ = time.perf_counter() - t0
        return coo

    def key_params(self) -> dict[str, Any]:
        """The parameters worth showing in a plot title or a metrics table."""
        out = {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist}
        if self.backend != "torch":
            return {**out, "backend": self.backend}
        return {**out, **super().key_params()}

    def _pretrain(
        self,
        mlp: nn.Module,
        X_dev: torch.Tensor,
        target: torch.Tensor,
        gen: torch.Generator,
        device: torch.device,
        lr: float,
        reference: bool = False,
    ) -> list[dict[str, Any]]:
        """Regress ``target``: the PCA layout (a few steps: it only has to be roughly right)
        or the reference map (:data:`REFERENCE_INIT_STEPS`); a fixed budget whatever n."""
        n = X_dev.shape[0]
        bs = min(512 if reference else 1024, n)
        steps = INIT_STEPS
        if reference:
            steps = min(REFERENCE_INIT_STEPS, max(200, REFERENCE_INIT_EPOCHS * n // bs))
        per_epoch = 100 if reference else 10
        scale = float(target.std()) ** 2 or 1.0

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
            for _ in range(per_epoch):
                idx = torch.randint(0, n, (bs,), generator=gen, device=device)
                yield X_dev[idx], target[idx]

        def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return F.mse_loss(module(batch[0]), batch[1]) / scale

        result = train(
            mlp,
            batches,
            loss_fn,
            n_epochs=max(1, steps // per_epoch),
            learning_rate=lr,
            lr_schedule="cosine" if reference else "constant",
            verbose=bool(self.verbose),
            desc=f"parametric UMAP ({'reference' if reference else 'PCA'} init)",
            precision=self.precision_,
        )
        return [{**h, "phase": "init"} for h in result.history]

    def transform(self, X: Any) -> np.ndarray:
        """Map points ``X`` (n, d) with one forward pass of the encoder (float32)."""
        if getattr(self, "keras_model_", None) is not None:
            arr = check_embeddings(X, name="X")
            return np.asarray(self.keras_model_.transform(arr), dtype=np.float32)
        return self._predict(X)

    def fit_transform(
        self, X: Any, y: Any = None, *, graph: Any = None, init_coords: Any = None
    ) -> np.ndarray:
        """Fit on ``X`` and return its map."""
        self.fit(X, y, graph=graph, init_coords=init_coords)
        out: np.ndarray = self.embedding_
        return out

    def _check_fitted(self) -> None:
        if getattr(self, "keras_model_", None) is not None:
            return
        super()._check_fitted()

    def to_torch_module(self) -> nn.Module:
        if getattr(self, "keras_model_", None) is not None:
            raise DinomapError(
                "to_torch_module needs the PyTorch encoder; this ParametricUMAP was fitted with "
                "backend='keras'. Refit with backend='torch' to export it."
            )
        return super().to_torch_module()

    to_torch_module.__doc__ = NeuralMapper.to_torch_module.__doc__

    # ----------------------------------------------------------------- keras backend
    def _fit_keras(self, Xa: np.ndarray, batch_size: int, start: float) -> ParametricUMAP:
        return fit_keras(self, Xa, batch_size, start)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        if getattr(self, "keras_model_", None) is None:
            return super().save(directory)
        return write_keras_mapper(self, directory)

    save.__doc__ = NeuralMapper.save.__doc__

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "auto") -> ParametricUMAP:
        config = read_mapper_config(directory)
        if config.get("backend") != "keras":
            return super().load(directory, device=device)
        return load_keras(cls, directory, config)

    load.__func__.__doc__ = NeuralMapper.load.__doc__  # type: ignore[attr-defined]


def _auto_epochs(per_epoch: int, batch_size: int, max_steps: int = AUTO_STEPS) -> int:
    """Epochs giving about ``max_steps`` gradient steps, within [5, 200]."""
    return int(min(200, max(5, math.ceil(max_steps * batch_size / per_epoch))))
