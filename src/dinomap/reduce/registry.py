"""Name -> factory registry of the 2-D mapping methods.

``get_reducer("tsne", perplexity=50)`` builds an estimator; an unknown name lists the valid
ones and suggests the closest. The neural mappers of :mod:`dinomap.parametric` are registered
here too, behind lazy factories, so that one name space covers all five maps. Each method lists
its capabilities; :func:`require_capability` turns "this method cannot do that" into an error
that names the methods that can.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, cast

from dinomap._validation import check_choice
from dinomap.exceptions import DinomapError, InvalidParameterError, MissingDependencyError
from dinomap.reduce._persist import read_mapper_config

__all__ = [
    "CAPABILITIES",
    "Backend",
    "ReducerSpec",
    "available_reducers",
    "get_reducer",
    "list_reducers",
    "load_reducer",
    "reducer_spec",
    "reducers_supporting",
    "register_reducer",
    "require_capability",
]

#: What a method may be able to do, beyond ``fit``.
CAPABILITIES = {
    "transform": "place new points on a fitted map",
    "inverse_transform": "map 2-D points back to embedding space",
    "export": "export as a plain PyTorch module (TorchScript, ONNX, Triton)",
    "deterministic": "give the identical map for the same random_state",
}


@dataclass(frozen=True)
class ReducerSpec:
    """One registered method.

    Attributes
    ----------
    name : str
        Registry name, also the column prefix in ``maps.parquet``.
    target : str
        ``"module:Class"`` of the estimator, imported on first use.
    label : str
        Human name for plots and tables.
    plot_name : str
        File name stem of its plot in ``plots/``.
    capabilities : frozenset of str
    needs_target : str or None
        Name of another method whose map ``fit`` takes as its target (``fit(X, Y)``).
    holdout_reference : str or None
        Name of the map this method imitates: it is trained on 90% of the points and its
        agreement with that map is measured on the other 10% (parametric UMAP: ``"umap"``).
    reuses_graph_of : str or None
        Name of a method whose fitted neighbour graph ``fit(X, graph=...)`` can reuse.
    numba_warm_up : bool
        Needs umap-learn's numba code, compiled in the background while other maps run.
    install_hint : str
        Shown when the module cannot be imported.
    backends : tuple of Backend
        Other implementations of the same method, chosen with ``get_reducer(name,
        backend=...)`` (``--param umap.backend=torchdr`` on the command line); ``target`` is
        the default one, named ``default_backend``.
    default_backend : str
        Name of the implementation in ``target``.
    large_data_sample : bool
        Above the large-data threshold, fit on a sample and place the other points with
        ``transform`` (see :mod:`dinomap.maps.large`).
    """

    name: str
    target: str
    label: str
    plot_name: str
    capabilities: frozenset[str] = field(default_factory=frozenset)
    needs_target: str | None = None
    install_hint: str = ""
    holdout_reference: str | None = None
    reuses_graph_of: str | None = None
    numba_warm_up: bool = False
    backends: tuple[Backend, ...] = ()
    default_backend: str = "dinomap"
    large_data_sample: bool = False

    def backend_names(self) -> list[str]:
        """Names of every implementation of this method, the default first."""
        return [self.default_backend, *(b.name for b in self.backends)]

    def backend(self, backend: str | None) -> Backend:
        """The :class:`Backend` called ``backend`` (``None``: the default one)."""
        if backend is None or backend == self.default_backend:
            return Backend(self.default_backend, self.target, install_hint=self.install_hint)
        check_choice(f"{self.name} backend", backend, self.backend_names())
        return next(b for b in self.backends if b.name == backend)

    def load_class(self, backend: str | None = None) -> type[Any]:
        """Import and return the estimator class (raises a clear error when unavailable)."""
        if backend is not None and backend != self.default_backend:
            return self.backend(backend).load_class(self.name)
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            cls: type[Any] = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            hint = f" {self.install_hint}" if self.install_hint else ""
            raise DinomapError(
                f"method {self.name!r} is not available: cannot import {self.target} ({exc}).{hint}"
            ) from exc
        return cls


@dataclass(frozen=True)
class Backend:
    """One implementation of a method (``"cuml"``, ``"torchdr"``...).

    ``requires`` names the third-party package it needs; when it is not installed,
    :meth:`load_class` raises :class:`~dinomap.exceptions.MissingDependencyError` with
    ``install_hint`` before anything is imported.
    """

    name: str
    target: str
    requires: str | None = None
    install_hint: str = ""

    def load_class(self, method: str = "") -> type[Any]:
        if self.requires is not None and importlib.util.find_spec(self.requires) is None:
            raise MissingDependencyError(
                f"the {self.name!r} backend of {method or 'this method'} needs the "
                f"{self.requires!r} package, which is not installed. {self.install_hint}".strip()
            )
        module_name, _, attr = self.target.partition(":")
        try:
            return cast("type[Any]", getattr(importlib.import_module(module_name), attr))
        except (ImportError, AttributeError) as exc:
            raise MissingDependencyError(
                f"the {self.name!r} backend of {method or 'this method'} is not available: "
                f"cannot import {self.target} ({exc}). {self.install_hint}".strip()
            ) from exc


_REGISTRY: dict[str, ReducerSpec] = {}


def register_reducer(spec: ReducerSpec, *, overwrite: bool = False) -> ReducerSpec:
    """Add a method to the registry (``overwrite=True`` to replace one)."""
    if spec.name in _REGISTRY and not overwrite:
        raise InvalidParameterError(f"a method named {spec.name!r} is already registered.")
    unknown = set(spec.capabilities) - set(CAPABILITIES)
    if unknown:
        raise InvalidParameterError(
            f"capabilities must be among {', '.join(sorted(CAPABILITIES))}; got {sorted(unknown)}."
        )
    _REGISTRY[spec.name] = spec
    return spec


def list_reducers() -> list[str]:
    """Names of every registered method, in registration order."""
    return list(_REGISTRY)


def reducer_spec(name: str) -> ReducerSpec:
    """The :class:`ReducerSpec` of ``name``; an unknown name lists the valid ones."""
    check_choice("method", name, list(_REGISTRY))
    return _REGISTRY[name]


def available_reducers() -> list[str]:
    """Registered methods whose implementation imports in this environment."""
    names = []
    for name, spec in _REGISTRY.items():
        try:
            spec.load_class()
        except DinomapError:
            continue
        names.append(name)
    return names


def get_reducer(name: str, backend: str | None = None, **params: Any) -> Any:
    """Build the estimator registered as ``name`` with ``params``.

    ``backend`` picks another implementation of the same method (``get_reducer("umap",
    backend="torchdr")``; ``spec.backend_names()`` lists them); an optional one is imported
    only here and, when its package is missing, fails with
    :class:`~dinomap.exceptions.MissingDependencyError` naming what to install.

    Examples
    --------
    >>> get_reducer("tsne", perplexity=50).perplexity
    50
    >>> get_reducer("tnse")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dinomap.exceptions.InvalidParameterError: method must be one of 'pca', ...
    """
    spec = reducer_spec(name)
    cls = spec.load_class(backend)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidParameterError(f"bad parameters for method {name!r}: {exc}") from exc


def reducers_supporting(capability: str) -> list[str]:
    """Registered methods that have ``capability`` (see :data:`CAPABILITIES`)."""
    check_choice("capability", capability, list(CAPABILITIES))
    return [n for n, s in _REGISTRY.items() if capability in s.capabilities]


def require_capability(name: str, capability: str) -> None:
    """Raise a clear error when method ``name`` cannot ``capability``, naming those that can."""
    spec = reducer_spec(name)
    if capability in spec.capabilities:
        return
    able = reducers_supporting(capability)
    raise InvalidParameterError(
        f"method {name!r} cannot {CAPABILITIES[capability]} ({capability}); "
        f"methods that can: {', '.join(able) if able else 'none'}."
    )


def load_reducer(directory: str | os.PathLike[str]) -> Any:
    """Load any saved mapper (classic or neural) from a directory written by its ``save``."""
    config = read_mapper_config(directory)
    cls_name = config.get("class")
    for spec in _REGISTRY.values():
        if spec.target.partition(":")[2] == cls_name:
            return spec.load_class().load(directory)
        for other in spec.backends:
            if other.target.partition(":")[2] == cls_name:
                return other.load_class(spec.name).load(directory)
    raise DinomapError(f"{directory} holds a {cls_name!r}, which is not a registered mapper class.")


_TORCH_HINT = "It needs the dinomap.parametric package (PyTorch)."
_CUML_HINT = (
    "cuML needs an NVIDIA GPU and CUDA: pip install --extra-index-url=https://pypi.nvidia.com "
    '"cuml-cu12" (see https://docs.rapids.ai/install).'
)

for _spec in (
    ReducerSpec(
        "pca",
        "dinomap.reduce.pca:PCAReducer",
        "PCA",
        "pca_embeddings",
        frozenset({"transform", "inverse_transform", "deterministic"}),
    ),
    ReducerSpec(
        "tsne",
        "dinomap.reduce.tsne:TSNEReducer",
        "t-SNE",
        "tsne_embeddings",
        frozenset({"transform", "deterministic"}),
        default_backend="opentsne",
        large_data_sample=True,
        backends=(Backend("cuml", "dinomap.reduce.cuml:CumlTSNEReducer", "cuml", _CUML_HINT),),
    ),
    ReducerSpec(
        "umap",
        "dinomap.reduce.umap:UMAPReducer",
        "UMAP",
        "umap_embeddings",
        frozenset({"transform"}),
        numba_warm_up=True,
        default_backend="umap-learn",
        large_data_sample=True,
        backends=(
            Backend("cuml", "dinomap.reduce.cuml:CumlUMAPReducer", "cuml", _CUML_HINT),
            Backend(
                "torchdr",
                "dinomap.reduce.torchdr:TorchDRUMAPReducer",
                "torchdr",
                'pip install "dinomap[torchdr]"',
            ),
        ),
    ),
    ReducerSpec(
        "parametric_umap",
        "dinomap.parametric:ParametricUMAP",
        "Parametric UMAP",
        "parametric_umap_embeddings",
        frozenset({"transform", "export"}),
        install_hint=_TORCH_HINT,
        holdout_reference="umap",
        reuses_graph_of="umap",
        numba_warm_up=True,
        large_data_sample=True,
    ),
    ReducerSpec(
        "tsne_nn",
        "dinomap.parametric:TSNEApproximator",
        "t-SNE NN",
        "t-sne_nn_embeddings",
        frozenset({"transform", "export", "deterministic"}),
        needs_target="tsne",
        install_hint=_TORCH_HINT,
        large_data_sample=True,
    ),
):
    register_reducer(_spec)
