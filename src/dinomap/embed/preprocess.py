"""Batched preprocessing: uint8 RGB pixels -> normalised float tensors, on any device.

The default reproduces the original pipeline: each image resized to 32x32 (OpenCV, bilinear),
the batch upsampled to 224x224 (bilinear) and normalised with the model's mean/std (ImageNet).
The module is TorchScript-able, so the exported raw-pixel model runs the very same code.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Preprocess"]


class Preprocess(nn.Module):
    """uint8 ``[N, H, W, 3]`` RGB -> float32 ``[N, 3, S, S]`` normalised.

    Parameters
    ----------
    input_size : int
        Model input size ``S``.
    mean, std : sequence of 3 floats
        Per-channel normalisation, in the 0-1 pixel scale.
    source_size : int, optional
        When set, images are first brought to ``source_size`` x ``source_size`` (the original
        pipeline's 32x32 bottleneck), unless they already have that size.

    Examples
    --------
    >>> pre = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), source_size=32)
    >>> pre(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape
    torch.Size([2, 3, 224, 224])
    """

    # Real (not string) annotations: TorchScript reads them, so no `from __future__` here.
    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        source_size: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.source_size = int(source_size) if source_size is not None else 0
        scale = 255.0
        self.register_buffer(
            "mean", torch.tensor([m * scale for m in mean], dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "inv_std",
            torch.tensor([1.0 / (s * scale) for s in std], dtype=torch.float32).view(1, 3, 1, 1),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        s = self.source_size
        if s > 0 and (x.shape[-2] != s or x.shape[-1] != s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
            # Stored as uint8 by OpenCV in the original. The tiny offset makes exact .5 ties
            # (frequent at 28->32 and 56->32) round half up as OpenCV does, and the same way in
            # every runtime (onnxruntime orders the resize arithmetic differently).
            x = (x + 1e-3).round().clamp(0.0, 255.0)
        if x.shape[-2] != self.input_size or x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return (x - self.mean) * self.inv_std
