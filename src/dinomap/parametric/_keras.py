"""``backend="keras"`` of :class:`~dinomap.parametric.umap.ParametricUMAP`: umap-learn's
TensorFlow ``ParametricUMAP``, its fit, and saving / reloading its encoder."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dinomap._umap import import_parametric_umap
from dinomap.exceptions import MissingDependencyError
from dinomap.parametric._base import NeuralMapper
from dinomap.reduce._persist import CONFIG_FILE, FORMAT_VERSION
from dinomap.store import atomic_write_json

__all__ = [
    "KERAS_ENCODER",
    "KERAS_HINT",
    "fit_keras",
    "keras_module",
    "load_keras",
    "write_keras_mapper",
]

KERAS_HINT = 'pip install "dinomap[keras]"'
KERAS_ENCODER = "encoder.keras"

#: The mapper a Keras fit fills in (a ParametricUMAP; typed by its base, which does not import
#: this module).
M = TypeVar("M", bound=NeuralMapper)


class _KerasEncoder:
    """A reloaded Keras encoder, with the ``encoder`` / ``transform`` of umap-learn's class."""

    def __init__(self, encoder: Any, batch_size: int) -> None:
        self.encoder = encoder
        self.batch_size = batch_size

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder.predict(X, batch_size=self.batch_size, verbose=0))


def keras_module() -> Any:
    """``umap.parametric_umap``; :class:`MissingDependencyError` without TensorFlow."""
    if importlib.util.find_spec("tensorflow") is None:
        raise MissingDependencyError(
            "backend='keras' needs TensorFlow, which is not installed. "
            f'Install it with {KERAS_HINT}, or use backend="torch" (the default).'
        )
    return import_parametric_umap()


def fit_keras(mapper: M, Xa: np.ndarray, batch_size: int, start: float) -> M:
    """Fit ``mapper`` with umap-learn's Keras ``ParametricUMAP`` (its ``keras_model_``)."""
    pumap_cls = keras_module().ParametricUMAP
    n = int(Xa.shape[0])
    kwargs: dict[str, Any] = {
        "n_components": mapper.n_components,
        "n_neighbors": mapper.n_neighbors,
        "min_dist": mapper.min_dist,
        "negative_sample_rate": mapper.negative_sample_rate,
        # umap-learn runs len(edges) / batch_size / 10 steps per Keras epoch on an endless
        # edge stream: a batch above a tenth of the points can make that 0, which Keras
        # takes as "no limit" and never stops. Each point has at least one edge.
        "batch_size": min(batch_size, max(1, n // 10)),
        "verbose": bool(mapper.verbose),
    }
    if mapper.n_epochs is not None:
        kwargs["n_epochs"] = mapper.n_epochs
    if isinstance(mapper.random_state, int | np.integer):
        kwargs["random_state"] = int(mapper.random_state)
    model = pumap_cls(**kwargs)
    mapper.embedding_ = np.asarray(model.fit_transform(Xa), dtype=np.float32)
    mapper.keras_model_ = model
    mapper.n_features_in_ = int(Xa.shape[1])
    mapper.fit_seconds_ = time.perf_counter() - start
    return mapper


def write_keras_mapper(mapper: M, directory: str | os.PathLike[str]) -> Path:
    """Save a Keras-fitted ``mapper``: its encoder and a JSON config."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # Only the encoder: it is all that transform needs, and umap-learn's own save fails
    # under Keras 3 (its training model cannot be serialised).
    (out / "keras").mkdir(exist_ok=True)
    partial = out / "keras" / "encoder.partial.keras"
    mapper.keras_model_.encoder.save(str(partial))
    os.replace(partial, out / "keras" / KERAS_ENCODER)
    params = mapper.get_params(deep=False)
    if not isinstance(params.get("random_state"), int | None):
        params["random_state"] = None
    atomic_write_json(
        out / CONFIG_FILE,
        {
            "format_version": FORMAT_VERSION,
            "class": type(mapper).__name__,
            "backend": "keras",
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
            "fitted": {"n_features_in_": mapper.n_features_in_},
        },
    )
    return out


def load_keras(cls: type[M], directory: str | os.PathLike[str], config: dict[str, Any]) -> M:
    """Reload what :func:`write_keras_mapper` wrote (``config`` is its JSON config)."""
    keras_module()
    import keras

    params = dict(config["params"])
    params["hidden"] = tuple(params["hidden"])
    mapper = cls(**params)
    encoder = keras.models.load_model(str(Path(directory) / "keras" / KERAS_ENCODER))
    mapper.keras_model_ = _KerasEncoder(encoder, int(params["batch_size"]))
    mapper.n_features_in_ = int(config["fitted"]["n_features_in_"])
    return mapper
