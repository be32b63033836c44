"""What the neural mappers share: prediction, saving, loading and export."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from dinomap._device import resolve_device
from dinomap._validation import check_embeddings, check_n_features
from dinomap.exceptions import DinomapError
from dinomap.parametric.nets import (
    MapperNet,
    Standardizer,
    build_mlp,
    fold_standardization,
    resolve_hidden,
)
from dinomap.reduce._persist import (
    CONFIG_FILE,
    FORMAT_VERSION,
    from_jsonable,
    jsonable,
    not_fitted,
    read_mapper_config,
)
from dinomap.reduce.base import Reducer

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "NeuralMapper"]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pt"

M = TypeVar("M", bound="NeuralMapper")


class NeuralMapper(Reducer):
    """Base class of the PyTorch mappers: one MLP, wrapped in a :class:`MapperNet`.

    The same contract as every reducer (:class:`dinomap.reduce.base.Reducer`: parameters in
    ``__init__``, ``validate(n)`` before any work, ``fit`` returns ``self``, ``transform`` checks
    that it is fitted and the number of features); ``fit`` itself is the subclass's (the t-SNE
    approximator takes the map to imitate, ``fit(X, Y)``), and it persists as a state dict.
    Subclasses set ``net_``, ``n_features_in_``, ``device_`` in ``fit`` and list the JSON-able
    fitted attributes to persist in ``_saved_attributes``.
    """

    _saved_attributes: ClassVar[tuple[str, ...]] = ()
    net_: MapperNet
    n_features_in_: int
    device_: torch.device

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` has run."""
        return hasattr(self, "net_")

    # ----------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise not_fitted(self, "fit(...)")

    def _predict(self, X: Any, batch_size: int = 65536) -> np.ndarray:
        self._check_fitted()
        arr = check_n_features(check_embeddings(X, name="X"), self.n_features_in_, self)
        net = self.net_.eval()
        out = np.empty((arr.shape[0], self._n_outputs()), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, arr.shape[0], batch_size):
                chunk = torch.from_numpy(arr[start : start + batch_size]).to(self.device_)
                out[start : start + batch_size] = net(chunk).float().cpu().numpy()
        return out

    def _n_outputs(self) -> int:
        return int(self.net_.output_mean.shape[0])

    def to_torch_module(self) -> nn.Module:
        """Return a plain CPU ``nn.Sequential`` mapping raw inputs to the map's coordinates.

        The input and output standardisation are folded into the first and last ``Linear``
        layers, so the module is ``Linear``/``ReLU`` only: ``torch.jit.script`` and
        ``torch.onnx.export`` take it as is, and its output equals :meth:`transform` up to
        float32 rounding.
        """
        self._check_fitted()
        return fold_standardization(self.net_)

    def key_params(self) -> dict[str, Any]:
        """The parameters worth showing in a plot title or a metrics table."""
        params = self.get_params(deep=False)
        out: dict[str, Any] = {}
        hidden = params.get("hidden")
        if hidden is not None:
            out["hidden"] = "-".join(str(h) for h in resolve_hidden(hidden))
        epochs = getattr(self, "n_epochs_", None)
        if epochs is not None:
            out["epochs"] = int(epochs)
        return out

    # ----------------------------------------------------------------- persistence
    def _extra_config(self) -> dict[str, Any]:
        """Fitted state to write besides the listed attributes (override when needed)."""
        return {}

    def _restore_extra(self, fitted: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_config` wrote (override when needed)."""

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the fitted mapper to ``directory`` (``config.json`` and ``model.pt``).

        ``model.pt`` is a PyTorch ``state_dict`` (MLP weights plus the standardisation
        buffers); ``config.json`` holds the class, its parameters and the fitted attributes.
        Both are written atomically. Returns the directory.
        """
        self._check_fitted()
        from dinomap.store.mappers import write_mapper

        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}
        torch.save(state, buf)
        fitted: dict[str, Any] = {
            "n_features_in_": int(self.n_features_in_),
            "n_outputs": self._n_outputs(),
        }
        for name in self._saved_attributes:
            fitted[name] = jsonable(getattr(self, name))
        fitted.update(self._extra_config())
        config = {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "method": self.method,
            "backend": "torch",
            "params": jsonable(self.get_params(deep=False)),
            "fitted": fitted,
            "torch_version": torch.__version__,
        }
        out = write_mapper(directory, {WEIGHTS_FILE: buf.getvalue()}, config)
        logger.info("saved %s to %s", type(self).__name__, out)
        return out

    @classmethod
    def load(cls: type[M], directory: str | os.PathLike[str], device: str = "auto") -> M:
        """Restore a mapper written by :meth:`save`, ready to ``transform``.

        Parameters
        ----------
        directory : path
            The directory given to :meth:`save`.
        device : str, default="auto"
            Where to run the restored network (CUDA when available with ``"auto"``).
        """
        config = read_mapper_config(directory)
        if config.get("class") != cls.__name__:
            raise DinomapError(
                f"{directory} holds a {config.get('class')!r}, not a {cls.__name__!r}; "
                f"load it with dinomap.{config.get('class')}.load."
            )
        params = dict(config["params"])
        params["device"] = device
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        mapper = cls(**params)
        mapper._restore(Path(directory), config)
        return mapper

    def _restore(self, directory: Path, config: dict[str, Any]) -> None:
        fitted = config["fitted"]
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise DinomapError(f"{weights} is missing; the saved mapper is incomplete.")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        n_in, n_out = int(fitted["n_features_in_"]), int(fitted["n_outputs"])
        hidden = resolve_hidden(self.get_params()["hidden"])
        proj = state.get("input_projection")
        n_mlp = int(proj.shape[1]) if proj is not None else n_in
        net = MapperNet(
            build_mlp(n_mlp, hidden, n_out, generator=torch.Generator().manual_seed(0)),
            Standardizer.identity(n_in),
            Standardizer.identity(n_out),
            None if proj is None else proj.numpy(),
        )
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise DinomapError(f"{weights} does not match its config.json: {exc}") from exc
        self.device_ = resolve_device(self.get_params()["device"])
        self.net_ = net.to(self.device_).eval()
        self.n_features_in_ = n_in
        for name in self._saved_attributes:
            if name in fitted:
                setattr(self, name, from_jsonable(fitted[name]))
        self._restore_extra(fitted)
