"""t-SNE's own loss for the t-SNE approximator: parametric t-SNE by contrastive learning.

Regression on the t-SNE coordinates copies where t-SNE put each training point, including
what is arbitrary there, and places new points between the clusters they hesitate between.
After it, the network is trained for ``contrastive_steps`` more steps on t-SNE's objective
itself, estimated as in "From t-SNE to UMAP with contrastive learning" (Damrich, Böhm,
Hamprecht & Kobak, ICLR 2023): InfoNC-t-SNE. Each step draws a batch of ``B`` pairs ``(i, j)``
with probability ``p_ij`` (openTSNE's perplexity affinities, the ones t-SNE itself fitted) and
contrasts each pair against every other point of the batch under t-SNE's Cauchy kernel
``q = 1 / (1 + d^2)`` in map units:

    loss = - mean_i [ log q_ij - log sum_{k != i} q_ik ]

which is van der Maaten's (2009) parametric t-SNE made to scale: the affinities are sparse,
no batch needs its own P, and the cost per step is ``2B`` forward passes plus a ``2B x 2B``
kernel (:func:`infonce_tsne_loss`). Starting from the regression, and a small share of the regression loss kept in
(``anchor``), keep t-SNE's layout of the clusters: left alone for long, the contrastive loss
drifts to its own equilibrium (tighter clusters than t-SNE's, measured: worse on
Fashion-MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dinomap.parametric.train import TrainResult, train

__all__ = ["check_affinities", "fit_affinities", "infonce_tsne_loss", "train_tsne_loss"]


def check_affinities(P: Any, n: int) -> Any:
    """``P`` as CSR after checking it is a sparse ``n x n`` matrix of non-negative weights."""
    import scipy.sparse as sp

    from dinomap.exceptions import InvalidParameterError

    if not sp.issparse(P) or P.shape != (n, n):
        raise InvalidParameterError(
            f"affinities must be a scipy.sparse matrix of shape ({n}, {n}) (openTSNE's P of "
            f"the same points); got {type(P).__name__} of shape {getattr(P, 'shape', None)}."
        )
    csr = P.tocsr()
    if csr.nnz == 0 or not np.all(np.isfinite(csr.data)) or (csr.data < 0).any():
        raise InvalidParameterError("affinities must hold finite, non-negative weights.")
    return csr


def fit_affinities(X: np.ndarray, perplexity: float, seed: int, n_jobs: int = 1) -> Any:
    """openTSNE's perplexity affinities of ``X`` (sparse, symmetric, summing to 1)."""
    from openTSNE.affinity import PerplexityBasedNN

    perplexity = float(min(perplexity, max(1.0, (X.shape[0] - 1) / 3)))
    method = "exact" if X.shape[0] < 1000 else "annoy"
    aff = PerplexityBasedNN(X, perplexity=perplexity, method=method, n_jobs=n_jobs,
                            random_state=seed % (2**31), verbose=False)  # fmt: skip
    return aff.P


class _BatchRepulsion(torch.autograd.Function):
    """``mean_i log sum_{k != i} q_ik`` of map points ``z`` with ``q = 1 / (1 + d^2)``, with a
    hand-written backward: one pass for ``q``, one for ``q^2`` and one ``N x N x 6`` matrix
    product for the gradient (autograd's chain of masked, reciprocal and sum ops took six
    times as long at ``N = 2,048``)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        # centred: the distances are unchanged and the norms that cancel in them smaller
        zc = z - z.mean(0, keepdim=True)
        sq = (zc * zc).sum(1)
        q = torch.addmm(sq[:, None] + sq[None, :], zc, zc.T, alpha=-2.0)
        q.clamp_min_(0.0).add_(1.0).reciprocal_()
        q.fill_diagonal_(0.0)  # masked out, not subtracted: the row sums stay exact
        s = q.sum(1)
        ctx.save_for_backward(zc, q, s)
        return torch.log(s).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        # d/dz_i = -(2/N) sum_k W_ik (z_i - z_k), W_ik = q_ik^2 (1/s_i + 1/s_k): both rows
        # i and k hold the pair. The four sums over k come from one product with q^2.
        zc, q, s = ctx.saved_tensors
        a = s.reciprocal()[:, None]
        sums = q.square() @ torch.cat([zc, torch.ones_like(a), a * zc, a], 1)
        w_row = a * sums[:, 2:3] + sums[:, 5:6]
        w_z = a * sums[:, 0:2] + sums[:, 3:5]
        return (-2.0 / zc.shape[0]) * grad * (zc * w_row - w_z)


def infonce_tsne_loss(z: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """InfoNC-t-SNE of the map points ``z`` (``2B x 2``, float32), row ``i``'s positive being
    ``pos[i]``: ``mean_i [log(1 + d_i,pos(i)^2) + log sum_{k != i} q_ik]``.

    The same value and gradient as ``-(log q_ij - logsumexp_{k != i} log q_ik)`` on
    ``torch.cdist``: the squared distances by one matrix product of the centred points, no
    log-sum-exp (every ``q = 1 / (1 + d^2)`` lies in (0, 1]) and the ``2B x 2B`` kernel's
    gradient written out (:class:`_BatchRepulsion`).
    """
    positives = (z - z[pos]).pow(2).sum(1)
    repulsion: torch.Tensor = _BatchRepulsion.apply(z.float())
    return torch.log1p(positives).mean() + repulsion


def train_tsne_loss(
    mlp: nn.Module,
    X_train: torch.Tensor,
    Y_train: torch.Tensor,
    P: Any,
    out_scale: torch.Tensor,
    *,
    anchor: float,
    steps: int,
    batch_size: int,
    learning_rate: float,
    gen: torch.Generator,
    verbose: bool,
    precision: str = "fp32",
) -> TrainResult:
    """Train ``mlp`` (on standardised inputs ``X_train``, outputs times ``out_scale`` = map
    units; hidden layers in ``precision``) for ``steps`` steps of InfoNC-t-SNE on the affinities ``P`` among those rows, plus
    ``anchor`` times the regression loss on the standardised coordinates ``Y_train`` (it keeps
    the map close to t-SNE's while the contrastive loss tightens the neighbourhoods)."""
    device = X_train.device
    coo = P.tocoo()
    keep = coo.row != coo.col
    heads = torch.from_numpy(coo.row[keep].astype(np.int64)).to(device)
    tails = torch.from_numpy(coo.col[keep].astype(np.int64)).to(device)
    w = coo.data[keep].astype(np.float64)
    cdf = torch.from_numpy(np.cumsum(w / w.sum())).to(device)
    B = int(batch_size)
    per_epoch = 100
    pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(device)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for _ in range(per_epoch):
            u = torch.rand(B, generator=gen, device=device, dtype=cdf.dtype)
            e = torch.searchsorted(cdf, u).clamp_(max=cdf.shape[0] - 1)
            ends = torch.cat([heads[e], tails[e]])
            yield X_train[ends], Y_train[ends]

    def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out = module(batch[0])
        loss = infonce_tsne_loss(out * out_scale, pos)
        if anchor > 0:
            loss = loss + anchor * ((out - batch[1]) ** 2).mean()
        return loss

    return train(
        mlp,
        batches,
        loss_fn,
        n_epochs=max(1, math.ceil(steps / per_epoch)),
        learning_rate=learning_rate,
        lr_schedule="cosine",
        verbose=verbose,
        desc="t-SNE approximator (t-SNE loss)",
        precision=precision,
    )
