"""The t-SNE approximator: an MLP that regresses given t-SNE coordinates from the embeddings.

t-SNE has no cheap way to place new points; this mapper learns one. It is trained on a random
part of the points and keeps the rest aside (``heldout_indices_``): those serve for early
stopping and for an honest measure of how closely it imitates the t-SNE map
(``heldout_metrics_``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinomap._device import TRAIN_PRECISIONS, resolve_device, training_precision
from dinomap._validation import (
    check_choice,
    check_embeddings,
    check_positive_float,
    check_positive_int,
)
from dinomap.exceptions import InvalidParameterError
from dinomap.maps.progress import stage
from dinomap.metrics import map_agreement
from dinomap.parametric._base import NeuralMapper
from dinomap.parametric._tsne_loss import check_affinities, fit_affinities, train_tsne_loss
from dinomap.parametric.nets import (
    MapperNet,
    Standardizer,
    build_mlp,
    check_inputs,
    fit_inputs,
    resolve_hidden,
    transform_inputs,
)
from dinomap.parametric.train import (
    LR_SCHEDULES,
    TrainResult,
    make_generator,
    seed_from_random_state,
    train,
)

__all__ = ["TSNEApproximator", "knn_agreement"]

logger = logging.getLogger(__name__)

#: The default budget of regression steps (batches of 512) and of t-SNE-loss steps after it:
#: the "fast" setting, which keeps all five maps of 70,000 points within five minutes on two
#: cores (69 s for this network at 70k, bf16 on the CPU). It meets the trustworthiness bars but
#: not the kNN-accuracy ones (0.781 / 0.763 against 0.808 / 0.774 on Fashion-MNIST 70k);
#: ``make_maps(quality="faithful")`` trains 20,000 + 12,000 steps, which meet all four in 357 s
#: (docs/maps.md).
MAX_STEPS = 6_000
CONTRASTIVE_STEPS = 1_500
#: At most this many passes over the training points' affinity pairs in those steps (so a
#: small collection takes fewer: at 63,000 training points 12,000 steps of 1,024 pairs are
#: 1.7 passes over t-SNE's 7.3 million pairs).
CONTRASTIVE_EPOCHS = 1.8
#: Weight of the regression loss kept during those steps.
CONTRASTIVE_ANCHOR = 0.05
#: Default decoupled weight decay. Light: the projection on ``input_pca`` components is what
#: keeps the network from memorising noise (Fashion-MNIST subsets of 2,000 and 10,000 points:
#: 0, 0.1 and 1.0 within 0.007 held-out trustworthiness; 1.0 helps tiny synthetic sets).
WEIGHT_DECAY = 0.1
#: Default number of principal components the network sees.
INPUT_PCA = 100


def knn_agreement(reference: np.ndarray, predicted: np.ndarray, k: int = 10) -> float:
    """Share of each point's ``k`` nearest neighbours in ``reference`` kept in ``predicted``
    (:func:`dinomap.metrics.map_agreement` over all points)."""
    return map_agreement(reference, predicted, k=k)


class TSNEApproximator(NeuralMapper):
    """An MLP trained to reproduce a t-SNE map, then tuned on t-SNE's own loss.

    By default the network sees the first 100 principal components of the inputs (one shared
    scale), has three hidden layers of 512, regresses the t-SNE coordinates for up to
    :data:`MAX_STEPS` steps (cosine schedule, early stopping) and then takes up to
    :data:`CONTRASTIVE_STEPS` steps of t-SNE's loss on the perplexity affinities
    (:mod:`dinomap.parametric._tsne_loss`): measured on Fashion-MNIST, see docs/maps.md. The
    original project's 384-256-2 regression is ``hidden="original", input_scaling="column",
    input_pca=None, contrastive_steps=0``. Targets are standardised on the training part; a random
    ``validation_fraction`` of the points is held out, and training stops once the held-out
    loss has not improved for ``patience`` epochs (the best epoch's weights are kept).

    Parameters
    ----------
    hidden : str or sequence of int, default="wide"
        Widths of the hidden layers (ReLU), or a name of :data:`dinomap.parametric.nets.NETS`:
        ``"wide"`` (512-512-512), ``"original"`` (the original project's 384-256-2),
        ``"nnp"`` (Espadoto et al. 2019), ``"keras-umap"``.
    n_components : int, default=2
        Dimension of the map imitated; must match the second dimension of ``Y``.
    max_epochs : int, default=500
        Upper bound on the epochs (passes over the training part).
    max_steps : int or None, default=MAX_STEPS
        Budget of gradient steps: the epochs are at most ``ceil(max_steps / steps per epoch)``,
        so the fit costs about the same from 50,000 points up (``None``: ``max_epochs`` only;
        :data:`MAX_STEPS` is the budget measured on Fashion-MNIST, see the README).
    patience : int, default=20
        Epochs without a better held-out loss before stopping.
    validation_fraction : float, default=0.1
        Share of the points held out, in (0, 1).
    batch_size : int, default=512
        Points per gradient step.
    learning_rate : float, default=3e-3
        Adam's starting step size.
    lr_schedule : {"constant", "linear", "cosine"}, default="cosine"
        How the step size decays over the planned epochs (moved after every batch).
    weight_decay : float, default=WEIGHT_DECAY
        Decoupled (AdamW) weight decay: each step shrinks the weights by
        ``learning_rate * weight_decay``. With ``input_scaling="column"`` and no
        ``input_pca`` it keeps the network from memorising the training points, whose exact
        t-SNE positions are partly noise (1.0 there).
    input_scaling : {"global", "column"}, default="global"
        How the inputs are scaled for the network: ``"global"`` centres them and divides by
        one shared scale (the embedding space's geometry is kept); ``"column"`` standardises
        each column (the original project's; it makes every low-variance direction as loud as
        the largest, and the network then memorises noise).
    input_pca : int or None, default=INPUT_PCA
        Feed the network the first ``input_pca`` principal components of the inputs (a fixed
        projection, fitted on the training part and folded into the first layer on export).
    contrastive_steps : int, default=CONTRASTIVE_STEPS
        After the regression, steps of t-SNE's own loss (InfoNC-t-SNE on the perplexity
        affinities, :mod:`dinomap.parametric._tsne_loss`); 0 for the regression alone.
    contrastive_batch_size : int, default=1024
        Pairs per step of that loss (each contrasted with the ``2B - 2`` other points).
    contrastive_epochs : float, default=CONTRASTIVE_EPOCHS
        At most this many passes over the affinity pairs of the training points: the steps
        are ``min(contrastive_steps, ceil(contrastive_epochs * pairs / batch))``, fewer on a
        small collection.
    perplexity : float, default=30
        Perplexity of the affinities computed when ``fit`` is given none.
    input_noise : float, default=0.0
        Standard deviation of Gaussian noise added to the standardised inputs of each batch
        (another regulariser, akin to ridge regression).
    random_state : int, numpy Generator or None, default=None
        Seeds the split, the initial weights and the batch order. With an int, fits on the CPU
        are identical run after run.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Arithmetic of the hidden layers while training (:class:`~dinomap.parametric.train.MixedPrecision`):
        ``"auto"`` is bf16 on CUDA and on CPUs with native bf16 (``avx512_bf16``, AMX), fp32
        elsewhere. The output layer, the losses and the saved network stay fp32.
    verbose : bool, default=False
        Show a progress bar.

    Attributes
    ----------
    net_ : MapperNet
        The trained network (with its standardisation).
    heldout_indices_, train_indices_ : numpy.ndarray
        Sorted row indices of the held-out and training points.
    heldout_metrics_ : dict
        Agreement with the imitated map on the held-out points: ``r2`` (share of the map's
        variance reproduced), ``rmse`` (in map units), ``rmse_relative`` (rmse over the map's
        RMS spread), ``knn_agreement`` (share of each held-out point's 10 nearest held-out
        neighbours kept), ``n_heldout``.
    embedding_ : numpy.ndarray
        ``transform`` of the training data ``X`` (all rows).
    history_ : list of dict
        Per-epoch training and held-out loss.
    best_epoch_, n_epochs_ : int
        Epoch kept and epochs run.
    fit_seconds_ : float
        Wall time of ``fit``.
    device_ : torch.device
        Where the network lives.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 16)).astype("float32")
    >>> Y = X[:, :2] * 10
    >>> approx = TSNEApproximator(hidden=(32,), max_epochs=5, random_state=0).fit(X, Y)
    >>> approx.transform(X[:3]).shape
    (3, 2)
    """

    method: ClassVar[str] = "tsne_nn"
    display_name: ClassVar[str] = "t-SNE NN"

    _saved_attributes: ClassVar[tuple[str, ...]] = (
        "heldout_indices_",
        "train_indices_",
        "heldout_metrics_",
        "best_epoch_",
        "n_epochs_",
        "fit_seconds_",
        "precision_",
    )

    def __init__(
        self,
        hidden: str | tuple[int, ...] = "wide",
        n_components: int = 2,
        max_epochs: int = 500,
        max_steps: int | None = MAX_STEPS,
        patience: int = 20,
        validation_fraction: float = 0.1,
        batch_size: int = 512,
        learning_rate: float = 3e-3,
        lr_schedule: str = "cosine",
        weight_decay: float = WEIGHT_DECAY,
        input_scaling: str = "global",
        input_pca: int | None = INPUT_PCA,
        contrastive_steps: int = CONTRASTIVE_STEPS,
        contrastive_batch_size: int = 1024,
        contrastive_epochs: float = CONTRASTIVE_EPOCHS,
        perplexity: float = 30.0,
        input_noise: float = 0.0,
        random_state: Any = None,
        device: str = "auto",
        precision: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.n_components = n_components
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.input_scaling = input_scaling
        self.input_pca = input_pca
        self.contrastive_steps = contrastive_steps
        self.contrastive_batch_size = contrastive_batch_size
        self.contrastive_epochs = contrastive_epochs
        self.perplexity = perplexity
        self.input_noise = input_noise
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.verbose = verbose

    def _checked_params(self, n_samples: int) -> dict[str, Any]:
        """Every parameter checked (with an error that names it) and converted."""
        check_positive_int("n_samples", n_samples, minimum=3)
        frac = check_positive_float("validation_fraction", self.validation_fraction)
        if not 0.0 < frac < 1.0:
            raise InvalidParameterError(
                f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}."
            )
        max_steps = self.max_steps
        if max_steps is not None:
            max_steps = check_positive_int("max_steps", max_steps)
        return {
            "n_components": check_positive_int("n_components", self.n_components),
            "hidden": resolve_hidden(self.hidden),
            "max_epochs": check_positive_int("max_epochs", self.max_epochs),
            "max_steps": max_steps,
            "patience": check_positive_int("patience", self.patience),
            "batch_size": check_positive_int("batch_size", self.batch_size),
            "lr": check_positive_float("learning_rate", self.learning_rate),
            "schedule": check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            "wd": check_positive_float("weight_decay", self.weight_decay, allow_zero=True),
            "noise": check_positive_float("input_noise", self.input_noise, allow_zero=True),
            **check_inputs(self.input_scaling, self.input_pca),
            "frac": frac,
            "c_steps": check_positive_int("contrastive_steps", self.contrastive_steps, minimum=0),
            "c_batch": check_positive_int(
                "contrastive_batch_size", self.contrastive_batch_size, minimum=2
            ),
            "c_epochs": check_positive_float("contrastive_epochs", self.contrastive_epochs),
            "perplexity": check_positive_float("perplexity", self.perplexity),
            "precision": check_choice("precision", self.precision, TRAIN_PRECISIONS),
        }

    def validate(self, n_samples: int) -> None:
        """Check every parameter against a data set of ``n_samples`` points, before any work."""
        self._checked_params(n_samples)

    def fit(self, X: Any, Y: Any = None, *, affinities: Any = None) -> TSNEApproximator:
        """Learn to map ``X`` (n, d) to the map coordinates ``Y`` (n, n_components).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        Y : array-like of shape (n_samples, n_components)
            The t-SNE map to imitate.
        affinities : scipy.sparse matrix of shape (n_samples, n_samples), optional
            t-SNE's affinities of ``X`` (``openTSNE``'s ``P``; ``make_maps`` passes those of
            the t-SNE it imitates), for ``contrastive_steps``; computed when omitted.

        Returns
        -------
        self
        """
        if Y is None:
            raise InvalidParameterError(
                "TSNEApproximator imitates a map: call fit(X, Y) with Y the t-SNE coordinates "
                "of X (make_maps does this with the tsne map)."
            )
        start = time.perf_counter()
        Xa = check_embeddings(X, name="X", min_samples=3)
        Ya = check_embeddings(Y, name="Y", min_samples=3)
        p = self._checked_params(Xa.shape[0])
        if Ya.shape[0] != Xa.shape[0]:
            raise InvalidParameterError(
                f"X and Y must have the same number of rows; got {Xa.shape[0]} and {Ya.shape[0]}."
            )
        if Ya.shape[1] != p["n_components"]:
            raise InvalidParameterError(
                f"Y must have n_components={p['n_components']} columns; got {Ya.shape[1]}."
            )
        n = Xa.shape[0]
        if affinities is not None:
            affinities = check_affinities(affinities, n)
        n_val = min(max(1, round(n * p["frac"])), n - 2)
        device = resolve_device(self.device)
        p["precision"] = training_precision(p["precision"], device)
        seed = seed_from_random_state(self.random_state)
        perm = np.random.default_rng(seed).permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        x_std, proj, X_train = fit_inputs(Xa[train_idx], p["scaling"], p["pca"], seed)
        y_std = Standardizer.fit(Ya[train_idx])
        mlp = build_mlp(X_train.shape[1], p["hidden"], p["n_components"],
                        generator=make_generator(seed))  # fmt: skip
        net = MapperNet(mlp, x_std, y_std, proj).to(device)

        def to_dev(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        X_val = transform_inputs(x_std, proj, Xa[val_idx])
        train_set = (to_dev(X_train), to_dev(y_std.transform(Ya[train_idx])))
        val_set = (to_dev(X_val), to_dev(y_std.transform(Ya[val_idx])))
        gen = make_generator(seed + 1, device)
        with stage("tsne_nn: regression steps"):
            result = _regress(net.mlp, train_set, val_set, p, gen, self)
        self.history_ = [{**h, "phase": "regression"} for h in result.history]
        if p["c_steps"] > 0 and len(train_idx) > 2 * p["c_batch"]:
            with stage("tsne_nn: affinities"):
                if affinities is None:
                    affinities = fit_affinities(Xa[train_idx], p["perplexity"], seed)
                else:
                    affinities = affinities[train_idx][:, train_idx]
            with stage("tsne_nn: t-SNE loss steps"):
                self.history_ += _tune(net, train_set, affinities, p, gen, bool(self.verbose))
        self.net_ = net.eval()
        self.device_ = device
        self.precision_ = p["precision"]
        self.n_features_in_ = int(Xa.shape[1])
        self.heldout_indices_ = val_idx
        self.train_indices_ = train_idx
        self.best_epoch_ = int(result.best_epoch)
        self.n_epochs_ = int(result.epochs_run)
        self.embedding_ = self._predict(Xa)
        self.heldout_metrics_ = _agreement(Ya[val_idx], self.embedding_[val_idx])
        self.fit_seconds_ = time.perf_counter() - start
        logger.info(
            "t-SNE approximator: held-out r2 %.3f, kNN agreement %.3f (%d points)",
            self.heldout_metrics_["r2"],
            self.heldout_metrics_["knn_agreement"],
            n_val,
        )
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Place points ``X`` (n, d) on the imitated map, in its own units (float32)."""
        return self._predict(X)

    def fit_transform(self, X: Any, Y: Any = None) -> np.ndarray:
        """Fit on ``(X, Y)`` and return the approximator's map of ``X``."""
        self.fit(X, Y)
        out: np.ndarray = self.embedding_
        return out


def planned_epochs(n_train: int, batch_size: int, max_epochs: int, max_steps: int | None) -> int:
    """Epochs within ``max_epochs`` and the ``max_steps`` budget of gradient steps."""
    if max_steps is None:
        return max_epochs
    per_epoch = max(1, math.ceil(n_train / batch_size))
    return int(max(1, min(max_epochs, math.ceil(max_steps / per_epoch))))


def _tune(
    net: MapperNet,
    train_set: tuple[torch.Tensor, torch.Tensor],
    affinities: Any,
    p: dict[str, Any],
    gen: torch.Generator,
    verbose: bool,
) -> list[dict[str, Any]]:
    """The t-SNE-loss steps after the regression (at most ``c_epochs`` passes over the
    training points' affinity pairs); their history."""
    pairs = affinities.nnz - int((affinities.diagonal() != 0).sum())
    steps = min(p["c_steps"], math.ceil(p["c_epochs"] * pairs / p["c_batch"]))
    if steps <= 0:
        return []
    tuned = train_tsne_loss(
        net.mlp, train_set[0], train_set[1], affinities, net.output_scale,
        anchor=CONTRASTIVE_ANCHOR, steps=steps, batch_size=p["c_batch"],
        learning_rate=p["lr"] / 3, gen=gen, verbose=verbose, precision=p["precision"],
    )  # fmt: skip
    return [{**h, "phase": "tsne_loss"} for h in tuned.history]


def _regress(
    mlp: nn.Module,
    train_set: tuple[torch.Tensor, torch.Tensor],
    val_set: tuple[torch.Tensor, torch.Tensor],
    p: dict[str, Any],
    gen: torch.Generator,
    owner: TSNEApproximator,
) -> TrainResult:
    """Train ``mlp`` by mean squared error on the standardised coordinates."""
    Xt, Yt = train_set
    Xv, Yv = val_set
    device = Xt.device
    batch_size, noise = p["batch_size"], p["noise"]
    n_train = Xt.shape[0]

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(n_train, generator=gen, device=device)
        for s in range(0, n_train, batch_size):
            idx = order[s : s + batch_size]
            xb = Xt[idx]
            if noise > 0:
                xb = xb + noise * torch.randn(
                    xb.shape, generator=gen, device=device, dtype=xb.dtype
                )
            yield xb, Yt[idx]

    def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return F.mse_loss(module(batch[0]), batch[1])

    def validate(module: nn.Module) -> float:
        total = torch.zeros((), device=device)
        for s in range(0, Xv.shape[0], 65536):
            pred = module(Xv[s : s + 65536])
            total += ((pred - Yv[s : s + 65536]) ** 2).sum()
        return float(total) / Yv.numel()

    return train(
        mlp,
        batches,
        loss_fn,
        n_epochs=planned_epochs(n_train, batch_size, p["max_epochs"], p["max_steps"]),
        learning_rate=p["lr"],
        weight_decay=p["wd"],
        lr_schedule=p["schedule"],
        steps_per_epoch=math.ceil(n_train / batch_size),
        validate=validate,
        patience=p["patience"],
        verbose=bool(owner.verbose),
        desc="t-SNE approximator",
        precision=p["precision"],
    )


def _agreement(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    ref = reference.astype(np.float64)
    pred = predicted.astype(np.float64)
    sse = float(((ref - pred) ** 2).sum())
    sst = float(((ref - ref.mean(axis=0)) ** 2).sum())
    rmse = float(np.sqrt(sse / ref.shape[0]))
    spread = float(np.sqrt(sst / ref.shape[0]))
    return {
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
        "rmse": rmse,
        "rmse_relative": rmse / spread if spread > 0 else float("nan"),
        "knn_agreement": knn_agreement(ref, pred, k=10),
        "n_heldout": int(ref.shape[0]),
    }
