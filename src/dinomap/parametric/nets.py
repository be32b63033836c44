"""Small MLPs for the neural mappers and the plain module they export.

A mapper keeps its network as a :class:`MapperNet`: an MLP that works on standardised inputs and
outputs, plus the standardisation as buffers. Training runs the bare MLP on data standardised once
up front; prediction and export use the whole thing. :func:`fold_standardization` turns a
``MapperNet`` into a plain ``nn.Sequential`` of ``Linear``/``ReLU`` layers with the
standardisation folded into the first and last ``Linear`` layers, which ``torch.jit.script``,
ONNX and Triton take as is.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dinomap._validation import check_choice, check_hidden, check_positive_int, suggest
from dinomap.exceptions import InvalidParameterError

__all__ = [
    "INPUT_SCALINGS",
    "NETS",
    "MapperNet",
    "Standardizer",
    "build_mlp",
    "check_inputs",
    "fit_inputs",
    "fold_standardization",
    "hidden_label",
    "resolve_hidden",
]

#: Named hidden-layer stacks for ``hidden="name"``. ``"original"`` is the original project's
#: t-SNE approximator (384-256-2); ``"keras-umap"`` is umap-learn's Keras ``ParametricUMAP``
#: encoder (three layers of 100); ``"nnp"`` is Espadoto et al. (2019)'s NNP network
#: (256-512-256); ``"wide"`` is what the neural mappers use by default (measured on
#: Fashion-MNIST, see the README's table).
NETS: dict[str, tuple[int, ...]] = {
    "original": (256,),
    "keras-umap": (100, 100, 100),
    "nnp": (256, 512, 256),
    "wide": (512, 512, 512),
}


#: How the inputs are scaled before the MLP: ``"global"`` centres them and divides by one
#: shared scale (the geometry of the embedding space is kept: directions with little variance
#: stay small); ``"column"`` standardises each column (every direction as loud as the largest).
INPUT_SCALINGS = ("global", "column")


def resolve_hidden(hidden: Any) -> tuple[int, ...]:
    """The hidden widths of ``hidden``: a name of :data:`NETS` or a sequence of widths.

    Examples
    --------
    >>> resolve_hidden("original")
    (256,)
    >>> resolve_hidden((64, 32))
    (64, 32)
    """
    if isinstance(hidden, str):
        if hidden not in NETS:
            raise InvalidParameterError(
                f"hidden must be one of {sorted(NETS)} or a sequence of layer widths such as "
                f"(256, 256); got {hidden!r}." + suggest(hidden, list(NETS))
            )
        return NETS[hidden]
    return check_hidden(hidden)


def hidden_label(hidden: Any) -> str:
    """``"wide (512-512-512)"`` for a name, ``"256-256"`` for widths."""
    widths = "-".join(str(h) for h in resolve_hidden(hidden))
    return f"{hidden} ({widths})" if isinstance(hidden, str) else widths


def build_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Build ``Linear -> ReLU -> ... -> Linear`` with weights drawn from ``generator``.

    The weights never touch torch's global random state, so building a network neither depends
    on nor changes any seed set elsewhere (habit 4 of ARCHITECTURE.md).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and of the output.
    hidden : sequence of int
        Width of each hidden layer; empty for a linear map.
    generator : torch.Generator, optional
        Source of the initial weights (He-uniform for hidden layers, Glorot-uniform for the last
        one, zero biases). A fresh unseeded generator when omitted.

    Returns
    -------
    torch.nn.Sequential

    Examples
    --------
    >>> net = build_mlp(384, (256,), 2, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(5, 384)).shape
    torch.Size([5, 2])
    """
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        last = i == len(sizes) - 2
        with torch.no_grad():
            # Glorot for the output layer, He for the ReLU layers.
            bound = math.sqrt(6.0 / (fan_in + fan_out) if last else 6.0 / fan_in)
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.zero_()
        layers.append(linear)
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Standardizer:
    """Per-column centring and scaling with a floor on tiny scales.

    Parameters
    ----------
    mean, scale : numpy.ndarray
        1-D float32 arrays of the column means and the scales divided by.

    Examples
    --------
    >>> s = Standardizer.fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> s.transform(np.array([[1.0, 2.0]]))
    array([[0., 0.]], dtype=float32)
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)

    @classmethod
    def fit(cls, X: np.ndarray, *, per_column: bool = True) -> Standardizer:
        """Learn the mean and scale of ``X``; one shared scale when ``per_column`` is false."""
        X64 = np.asarray(X, dtype=np.float64)
        mean = X64.mean(axis=0)
        if per_column:
            scale = X64.std(axis=0)
        else:
            scale = np.full(X64.shape[1], np.sqrt(((X64 - mean) ** 2).mean()))
        top = float(scale.max()) if scale.size else 0.0
        floor = max(top * 1e-6, 1e-12)
        scale = np.where(scale > floor, scale, 1.0)
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    @classmethod
    def identity(cls, n: int) -> Standardizer:
        """Return the standardiser that changes nothing."""
        return cls(np.zeros(n, np.float32), np.ones(n, np.float32))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return ``(X - mean) / scale`` as float32."""
        return ((np.asarray(X, dtype=np.float32) - self.mean) / self.scale).astype(np.float32)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Return ``Z * scale + mean`` as float32."""
        return (np.asarray(Z, dtype=np.float32) * self.scale + self.mean).astype(np.float32)


def check_inputs(input_scaling: Any, input_pca: Any) -> dict[str, Any]:
    """The checked ``input_scaling`` and ``input_pca`` of a mapper, as :func:`fit_inputs` takes
    them (``{"scaling": ..., "pca": ...}``)."""
    return {
        "scaling": check_choice("input_scaling", input_scaling, INPUT_SCALINGS),
        "pca": None if input_pca is None else check_positive_int("input_pca", input_pca),
    }


def transform_inputs(std: Standardizer, projection: np.ndarray | None, X: np.ndarray) -> np.ndarray:
    """``X`` as the MLP sees it: scaled, then projected (what :class:`MapperNet` does first)."""
    Z = std.transform(X)
    return Z if projection is None else np.ascontiguousarray(Z @ projection, dtype=np.float32)


def fit_inputs(
    X: np.ndarray, scaling: str, pca: int | None, seed: int
) -> tuple[Standardizer, np.ndarray | None, np.ndarray]:
    """How a mapper's MLP sees its inputs: the scaling, an optional projection on the first
    ``pca`` principal components (fitted on ``X``), and ``X`` so transformed (float32).

    The projection is linear and fixed: :class:`MapperNet` applies it after the scaling, and
    :func:`fold_standardization` folds both into the first ``Linear`` layer, so the exported
    network still takes the raw ``d``-dimensional embeddings.
    """
    projection = None
    if pca is not None and pca < X.shape[1]:
        from sklearn.decomposition import PCA

        k = int(min(pca, X.shape[0], X.shape[1]))
        fitted = PCA(k, svd_solver="randomized", random_state=seed % (2**32)).fit(X)
        projection = np.ascontiguousarray(fitted.components_.T, dtype=np.float32)
        mean = fitted.mean_.astype(np.float32)
        Z = (np.asarray(X, dtype=np.float32) - mean) @ projection
        if scaling == "column":  # per projected column, expressed on the raw inputs
            std = Standardizer(mean, np.ones_like(mean))
            projection = projection / Standardizer.fit(Z).scale
        else:
            rms = float(np.sqrt((Z.astype(np.float64) ** 2).sum(axis=1).mean() / Z.shape[1]))
            std = Standardizer(mean, np.full_like(mean, rms if rms > 0 else 1.0))
    else:
        std = Standardizer.fit(X, per_column=scaling == "column")
    return std, projection, transform_inputs(std, projection, X)


class MapperNet(nn.Module):
    """An MLP on standardised data, with the standardisation kept as buffers.

    ``forward`` maps raw inputs to outputs in the units of the target map;
    ``mlp`` is the bare network trained on standardised (and, with ``projection``, projected:
    ``(x - mean) / scale @ projection``) data.
    """

    input_mean: torch.Tensor
    input_scale: torch.Tensor
    input_projection: torch.Tensor
    output_mean: torch.Tensor
    output_scale: torch.Tensor

    def __init__(
        self,
        mlp: nn.Sequential,
        inputs: Standardizer,
        outputs: Standardizer,
        projection: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("input_mean", torch.from_numpy(inputs.mean.copy()))
        self.register_buffer("input_scale", torch.from_numpy(inputs.scale.copy()))
        self.projected = projection is not None
        if projection is not None:
            self.register_buffer("input_projection", torch.from_numpy(projection.copy()))
        self.register_buffer("output_mean", torch.from_numpy(outputs.mean.copy()))
        self.register_buffer("output_scale", torch.from_numpy(outputs.scale.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map raw inputs ``(n, in_features)`` to outputs ``(n, out_features)``."""
        x = (x - self.input_mean) / self.input_scale
        if self.projected:
            x = x @ self.input_projection
        return self.mlp(x) * self.output_scale + self.output_mean


def fold_standardization(net: MapperNet) -> nn.Sequential:
    """Return a CPU float32 ``nn.Sequential`` computing ``net`` with no standardisation step.

    The input standardisation (and projection ``P``) is folded into the first ``Linear`` layer
    (``W' = W P^T / s``, ``b' = b - W' m``) and the output one into the last
    (``W' = diag(s) W``, ``b' = s b + m``). The result is in eval mode, needs no gradients and
    is accepted by ``torch.jit.script`` and ``torch.onnx.export``.
    """
    mlp = copy.deepcopy(net.mlp).to(device="cpu", dtype=torch.float32).eval()
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    with torch.no_grad():
        in_mean = net.input_mean.detach().to("cpu", torch.float64)
        in_scale = net.input_scale.detach().to("cpu", torch.float64)
        w = first.weight.to(torch.float64)
        if net.projected:
            w = w @ net.input_projection.detach().to("cpu", torch.float64).T
        w = w / in_scale
        b = first.bias.to(torch.float64) - w @ in_mean
        if net.projected:  # the first layer now takes the raw inputs
            wide = nn.Linear(w.shape[1], w.shape[0])
            mlp[0] = wide
            last = wide if first is last else last
            first = wide
        first.weight.copy_(w.to(torch.float32))
        first.bias.copy_(b.to(torch.float32))
        out_mean = net.output_mean.detach().to("cpu", torch.float64)
        out_scale = net.output_scale.detach().to("cpu", torch.float64)
        w = last.weight.to(torch.float64) * out_scale[:, None]
        b = last.bias.to(torch.float64) * out_scale + out_mean
        last.weight.copy_(w.to(torch.float32))
        last.bias.copy_(b.to(torch.float32))
    for p in mlp.parameters():
        p.requires_grad_(False)
    return mlp
