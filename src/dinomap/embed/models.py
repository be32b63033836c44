"""Model registry and encoder creation.

A short alias (``dinov2-s14``) or any timm model name resolves to a timm model created for our
own input size (timm's DINOv2 tags default to 518 px; we never inherit that). Weights come from
timm's pretrained download, from a local state-dict file, or - only when asked explicitly - from
a seeded random initialisation, which is recorded so every output can say so.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinomap._validation import check_positive_int, suggest
from dinomap.embed.config import DEFAULT_MODEL, MODEL_ALIASES
from dinomap.exceptions import InvalidParameterError, WeightsUnavailableError

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "FeatureExtractor",
    "LoadedModel",
    "WeightsInfo",
    "create_encoder",
    "resolve_model_name",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_model_name(name: str) -> str:
    """Map an alias to its timm name; check that a timm name exists.

    Examples
    --------
    >>> resolve_model_name("dinov2-s14")
    'vit_small_patch14_dinov2.lvd142m'
    """
    import timm

    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    if timm.is_model(name):
        return name
    choices = [*MODEL_ALIASES, *timm.list_models("*dino*", pretrained=True)]
    raise InvalidParameterError(
        f"model must be an alias ({', '.join(MODEL_ALIASES)}) or a timm model name; got {name!r}."
        + suggest(name, choices)
    )


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from."""

    source: str  # "hub" | "file" | "random-init"
    random_init: bool
    file: str | None = None
    sha256: str | None = None
    seed: int | None = None

    def identity(self) -> str:
        """A string that differs whenever the weights may differ (used in the run fingerprint)."""
        if self.source == "file":
            return f"file:{self.sha256}"
        if self.source == "random-init":
            return f"random-init:seed={self.seed}"
        return "hub"


class FeatureExtractor(nn.Module):
    """Backbone + pooling: the CLS token of ``forward_features`` for ViTs (``[:, 0]``), the
    model's own pre-logits pooling otherwise. Input: normalised float [N, 3, S, S]; output
    float [N, D]. Scriptable with ``torch.jit.script`` for timm ViTs."""

    def __init__(self, backbone: nn.Module, cls_token: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.cls_token = cls_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No type comments in here: TorchScript parses them.
        feats = self.backbone.forward_features(x)
        if self.cls_token:
            return feats[:, 0]
        pooled: torch.Tensor = self.backbone.forward_head(feats, pre_logits=True)
        return pooled


@dataclass
class LoadedModel:
    """An encoder ready for inference, with everything a run must record about it."""

    extractor: FeatureExtractor
    name: str
    timm_name: str
    input_size: int
    embed_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: WeightsInfo
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The JSON-able description stored in ``run.json``."""
        return {
            "name": self.name,
            "timm_name": self.timm_name,
            "input_size": self.input_size,
            "embed_dim": self.embed_dim,
            "model_kwargs": dict(self.model_kwargs),
        }

    def weights_dict(self) -> dict[str, Any]:
        return asdict(self.weights)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "teacher", "module"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsUnavailableError(f"{path} does not hold a state dict.")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _load_local_weights(model: nn.Module, path: Path) -> None:
    try:
        state = _read_state_dict(path)
    except WeightsUnavailableError:
        raise
    except Exception as exc:
        raise WeightsUnavailableError(f"could not read weights file {path}: {exc}") from exc
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if isinstance(model, VisionTransformer):
        # Converts original DINOv2 keys and resamples position embeddings to our input size.
        state = checkpoint_filter_fn(state, model)
    if isinstance(getattr(model, "head", None), nn.Identity):
        dropped = [k for k in state if k.startswith("head.")]
        for k in dropped:
            del state[k]
        if dropped:
            logger.info("ignoring classifier head in %s (%d tensors)", path, len(dropped))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        result = model.load_state_dict(state, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        detail = f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        if not missing and not unexpected:
            detail = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise WeightsUnavailableError(
            f"weights file {path} does not match model {getattr(model, 'default_cfg', {}).get('architecture', '')}: "
            f"{detail}."
        ) from exc


def create_encoder(
    name: str = DEFAULT_MODEL,
    *,
    input_size: int = 224,
    weights: str | os.PathLike[str] | None = None,
    random_init: bool = False,
    init_seed: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Create an encoder in eval mode on the CPU.

    Parameters
    ----------
    name : str
        An alias of :data:`MODEL_ALIASES` or any timm model name.
    input_size : int
        Square input size the model is created for (224 for DINOv2 here).
    weights : path, optional
        A local ``.safetensors`` / ``.pth`` state dict, loaded strictly.
    random_init : bool
        Use seeded random weights. Explicit by design: dinomap never falls back to it silently.
    init_seed : int
        Seed of the random initialisation (a local RNG; global state is untouched).
    model_kwargs : mapping, optional
        Extra keyword arguments for ``timm.create_model`` (e.g. ``depth=2`` for a tiny test model).

    Raises
    ------
    WeightsUnavailableError
        When pretrained weights cannot be had; the message names ``--weights`` and ``--random-init``.

    Examples
    --------
    >>> enc = create_encoder("dinov2-s14", random_init=True, model_kwargs={"depth": 1})
    >>> enc.embed_dim
    384
    """
    import timm

    timm_name = resolve_model_name(name)
    check_positive_int("input_size", input_size, minimum=8)
    if weights is not None and random_init:
        raise InvalidParameterError("weights and random_init are exclusive; choose one.")
    kwargs: dict[str, Any] = {"num_classes": 0, **dict(model_kwargs or {})}
    if "img_size" not in kwargs and _accepts_img_size(timm_name):
        kwargs["img_size"] = input_size

    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = timm.create_model(timm_name, pretrained=False, **kwargs)
        info = WeightsInfo(source="random-init", random_init=True, seed=init_seed)
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsUnavailableError(f"weights file {path} does not exist.")
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
        _load_local_weights(model, path)
        info = WeightsInfo(
            source="file", random_init=False, file=str(path.resolve()), sha256=sha256_file(path)
        )
    else:
        try:
            _check_hub_reachable(timm_name)
            model = timm.create_model(timm_name, pretrained=True, **kwargs)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"could not get pretrained weights for {timm_name} from the model hub "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                "Download them once with network access (they are cached in the Hugging Face "
                "cache, HF_HOME), or pass --weights FILE (a local .safetensors/.pth state dict), "
                "or pass --random-init to run with untrained weights (results are meaningless "
                "and marked as such)."
            ) from exc
        info = WeightsInfo(source="hub", random_init=False)
    model.eval()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    cls_token = int(getattr(model, "num_prefix_tokens", 0)) > 0 and bool(
        getattr(model, "cls_token", None) is not None
    )
    extractor = FeatureExtractor(model, cls_token=cls_token).eval()
    return LoadedModel(
        extractor=extractor,
        name=name,
        timm_name=timm_name,
        input_size=input_size,
        embed_dim=int(getattr(model, "num_features", 0)),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        weights=info,
        model_kwargs=dict(model_kwargs or {}),
    )


def _accepts_img_size(timm_name: str) -> bool:
    """ViT-like timm models take ``img_size``; CNNs do not."""
    import timm

    entry = timm.models.model_entrypoint(timm.models.get_arch_name(timm_name))
    module = getattr(entry, "__module__", "") or ""
    return any(k in module for k in ("vision_transformer", "eva", "deit", "beit", "vitamin"))


def _check_hub_reachable(timm_name: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes of retries, when weights are neither cached nor reachable.

    Honours ``HF_HUB_OFFLINE`` / ``HF_ENDPOINT`` / ``HF_HOME`` through huggingface_hub itself:
    when the weights are in the local cache or the hub answers, this returns and timm loads them.
    """
    import socket
    from urllib.parse import urlparse

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(timm_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError("offline mode (HF_HUB_OFFLINE) and the weights are not cached")
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {host}: {exc}") from exc
