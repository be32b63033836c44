"""The one training loop shared by the neural mappers, and device / seed helpers.

Both :class:`~dinomap.parametric.ParametricUMAP` and
:class:`~dinomap.parametric.TSNEApproximator` train an MLP with Adam on mini-batches; they differ
only in how a batch is drawn and which loss it gets. :func:`train` takes those two things as
callables and does the rest: optimiser, learning-rate schedule, early stopping on a validation
score with the best weights restored, progress (a tqdm bar when ``verbose``, ``logging``
otherwise) and timing.

Randomness comes only from ``torch.Generator`` objects built from ``random_state``
(:func:`make_generator`); the global torch seed is never set or read.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dinomap.exceptions import InvalidParameterError

__all__ = [
    "MixedPrecision",
    "TrainResult",
    "make_generator",
    "seed_from_random_state",
    "train",
]

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, ...]

LR_SCHEDULES = ("constant", "linear", "cosine")


def seed_from_random_state(random_state: Any) -> int:
    """Return a 63-bit seed from ``None``, an int, a ``numpy`` Generator or RandomState.

    ``None`` draws fresh entropy, so two fits differ; an int always gives the same seed.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if isinstance(random_state, bool):
        raise InvalidParameterError(
            f"random_state must be None, an int or a numpy random generator; got {random_state!r}."
        )
    if isinstance(random_state, int | np.integer):
        if random_state < 0:
            raise InvalidParameterError(f"random_state must be >= 0; got {random_state!r}.")
        seq = np.random.SeedSequence(int(random_state))
        return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise InvalidParameterError(
        f"random_state must be None, an int or a numpy random generator; got {random_state!r}."
    )


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    history : list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean training loss), ``lr`` and, with a
        validation function, ``val_loss``.
    best_epoch : int
        Epoch (0-based) whose weights the module holds at the end.
    epochs_run : int
        Epochs actually run (fewer than asked when stopped early).
    stopped_early : bool
        Whether patience ran out.
    seconds : float
        Wall time of the loop.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def train(
    module: nn.Module,
    batches: Callable[[int], Iterable[Batch]],
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    *,
    n_epochs: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    steps_per_epoch: int | None = None,
    validate: Callable[[nn.Module], float] | None = None,
    patience: int | None = None,
    verbose: bool = False,
    desc: str = "training",
    precision: str = "fp32",
) -> TrainResult:
    """Train ``module`` with Adam on the batches drawn for each epoch.

    Parameters
    ----------
    module : torch.nn.Module
        Already on the training device; trained in place.
    batches : callable
        ``batches(epoch)`` yields the epoch's batches (tuples of tensors on the device). All the
        randomness of an epoch lives here, drawn from the caller's ``torch.Generator``.
    loss_fn : callable
        ``loss_fn(module, batch)`` returns the scalar loss of one batch.
    n_epochs : int
        Maximum number of epochs.
    learning_rate : float
        Adam's step size (the starting one with ``lr_schedule="linear"``).
    weight_decay : float, default=0.0
        AdamW-style decoupled weight decay.
    lr_schedule : {"constant", "linear", "cosine"}, default="constant"
        ``"linear"`` decays the step size to 5% of ``learning_rate`` over ``n_epochs``, as UMAP's
        own optimiser anneals its step; ``"cosine"`` follows half a cosine from
        ``learning_rate`` down to 1% of it.
    steps_per_epoch : int, optional
        Batches per epoch. When given, a decaying schedule moves the step size after every batch
        rather than once per epoch (smoother when there are few long epochs).
    validate : callable, optional
        ``validate(module)`` returns a validation loss after each epoch (called under
        ``torch.no_grad`` in eval mode). With it the best epoch's weights are restored at the
        end, and training stops after ``patience`` epochs without improvement.
    patience : int, optional
        Epochs without a better validation loss before stopping; ``None`` never stops early.
    verbose : bool, default=False
        Show a tqdm progress bar; otherwise progress goes to ``logging`` at DEBUG level.
    desc : str
        Label of the progress bar and the log lines.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: ``loss_fn`` gets the module wrapped in :class:`MixedPrecision` (its hidden
        layers under bf16 autocast, the output layer and the loss in fp32); the weights, the
        optimiser and validation stay fp32.

    Returns
    -------
    TrainResult
    """
    _check_lr_schedule(lr_schedule)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    result = TrainResult()
    best = _BestWeights()
    start = time.perf_counter()
    epochs, bar = _epoch_iterator(n_epochs, verbose, desc)
    forward = MixedPrecision(module) if precision == "bf16" else module

    for epoch in epochs:
        lr = _set_lr(optimizer, learning_rate, lr_schedule, epoch / max(n_epochs, 1))
        on_step = _per_step_lr(optimizer, learning_rate, lr_schedule, steps_per_epoch,
                               epoch, n_epochs)  # fmt: skip
        entry: dict[str, float] = {
            "epoch": float(epoch),
            "loss": _run_epoch(forward, optimizer, batches, loss_fn, epoch, on_step),
            "lr": lr,
        }
        if validate is not None:
            entry["val_loss"] = _validation_loss(module, validate)
            if best.update(module, entry["val_loss"]):
                result.best_epoch = epoch
        else:
            result.best_epoch = epoch
        result.history.append(entry)
        result.epochs_run = epoch + 1
        if not math.isfinite(entry["loss"]):
            logger.warning("%s: loss became %s at epoch %d; stopping.", desc, entry["loss"], epoch)
            result.stopped_early = True
            break
        if bar is not None:
            bar.set_postfix({k: round(v, 5) for k, v in entry.items() if k.endswith("loss")})
        logger.debug("%s epoch %d: %s", desc, epoch, entry)
        if patience is not None and validate is not None and best.bad_epochs >= patience:
            result.stopped_early = True
            break
    _finish_training(module, result, bar, best.state, start, desc)
    return result


def _per_step_lr(
    optimizer: torch.optim.Optimizer,
    learning_rate: float,
    lr_schedule: str,
    steps_per_epoch: int | None,
    epoch: int,
    n_epochs: int,
) -> Callable[[int], None] | None:
    """The callback that moves a decaying step size after every batch of ``epoch``, or
    ``None`` (constant schedule, or no known number of batches per epoch)."""
    if not steps_per_epoch or lr_schedule == "constant":
        return None
    per_epoch = steps_per_epoch

    def on_step(step: int) -> None:
        done = (epoch + min(step / per_epoch, 1.0)) / max(n_epochs, 1)
        _set_lr(optimizer, learning_rate, lr_schedule, done)

    return on_step


class MixedPrecision(nn.Module):
    """``module`` (an ``nn.Sequential`` ending in its output layer) with every layer but the
    last under bf16 autocast and the last one in fp32 on fp32 inputs: the matrix products of
    the hidden layers run at bf16 speed, while the coordinates come out at fp32 resolution
    (a bf16 output would round a map of ~100 units to steps of ~0.4). It holds no weights of
    its own."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.inner.children())
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            for layer in layers[:-1]:
                x = layer(x)
        out: torch.Tensor = layers[-1](x.float())
        return out


def _check_lr_schedule(lr_schedule: str) -> None:
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidParameterError(
            f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}; got {lr_schedule!r}."
        )


def _epoch_iterator(n_epochs: int, verbose: bool, desc: str) -> tuple[Iterable[int], Any]:
    """The epochs to loop over, wrapped in a tqdm bar (also returned) when ``verbose``."""
    epochs: Iterable[int] = range(n_epochs)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(epochs, desc=desc, unit="epoch", leave=False)
        epochs = bar
    return epochs, bar


def _set_lr(
    optimizer: torch.optim.Optimizer, learning_rate: float, lr_schedule: str, done: float
) -> float:
    """Set (and return) the step size once a share ``done`` of training is behind."""
    lr = learning_rate
    if lr_schedule == "linear":
        lr = learning_rate * max(0.05, 1.0 - done)
    elif lr_schedule == "cosine":
        lr = learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0))))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _run_epoch(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[Batch]],
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    epoch: int,
    on_step: Callable[[int], None] | None = None,
) -> float:
    """One optimiser step per batch of ``epoch``; return the mean training loss."""
    module.train()
    total = torch.zeros((), device=_device_of(module))
    n_batches = 0
    for batch in batches(epoch):
        if on_step is not None:
            on_step(n_batches)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(module, batch)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        n_batches += 1
    return float(total) / max(n_batches, 1)


def _validation_loss(module: nn.Module, validate: Callable[[nn.Module], float]) -> float:
    module.eval()
    with torch.no_grad():
        return float(validate(module))


@dataclass
class _BestWeights:
    """The best validation loss so far, a copy of its weights and the epochs since."""

    best_val: float = math.inf
    state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0

    def update(self, module: nn.Module, val: float) -> bool:
        """Record ``val``; return whether it is a new best (its weights are then kept)."""
        if val < self.best_val:
            self.best_val = val
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False


def _finish_training(
    module: nn.Module,
    result: TrainResult,
    bar: Any,
    best_state: dict[str, torch.Tensor] | None,
    start: float,
    desc: str,
) -> None:
    """Close the bar, restore the best weights, time the run and log its summary."""
    if bar is not None:
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    result.seconds = time.perf_counter() - start
    logger.info(
        "%s: %d epoch(s) in %.1f s (best epoch %d%s)",
        desc,
        result.epochs_run,
        result.seconds,
        result.best_epoch,
        ", stopped early" if result.stopped_early else "",
    )


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")
