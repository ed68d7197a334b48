"""Standard errors of trajectory averages by block averaging (Flyvbjerg & Petersen, JCP 91, 461 (1989)).

Consecutive MD frames are correlated, so the naive σ/√N understates the uncertainty of a mean.
Splitting the trajectory into ``n_blocks`` contiguous blocks that are longer than the correlation
time makes the block averages nearly independent; their spread gives the standard error. The
reduction may be nonlinear (a peak position of an averaged curve): each block is reduced on its
own, exactly as the whole trajectory is.
"""

from __future__ import annotations

from typing import Callable

import torch

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def uniform_reduce(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i O_i over the first axis (the default reduction of an observable)."""
    return torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))


def block_standard_error(values: torch.Tensor, n_blocks: int = 10, reduce: Reduce = uniform_reduce) -> torch.Tensor:
    """Standard error of ``reduce`` over all frames, from ``n_blocks`` contiguous blocks.

    SE = std(block results, ddof=1) / √n_blocks, element-wise.

    Args:
        values: [n_frames, *shape] per-frame values in time order.
        n_blocks: number of blocks (≥ 2); frames beyond a multiple of it are left out at the end.
        reduce: (values [m, *shape], weights [m]) → result [*out]; called per block with uniform weights.

    Returns:
        [*out] float64 standard errors, or NaN where there are fewer frames than blocks.
    """
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be at least 2, got {n_blocks}")
    n_frames = values.shape[0]
    size = n_frames // n_blocks
    if size == 0:
        shape = reduce(values, torch.full((n_frames,), 1.0 / max(n_frames, 1), dtype=torch.float64)).shape
        return torch.full(shape, float("nan"), dtype=torch.float64)
    weights = torch.full((size,), 1.0 / size, dtype=torch.float64)
    blocks = torch.stack([reduce(values[b * size:(b + 1) * size], weights).to(torch.float64) for b in range(n_blocks)])
    return blocks.std(dim=0, unbiased=True) / n_blocks**0.5


def default_n_blocks(n_frames: int) -> int:
    """Blocks for a short trajectory: at least 4 frames per block, between 2 and 10 blocks."""
    return max(2, min(10, n_frames // 4))


def mean_and_standard_error(values: torch.Tensor) -> tuple[float, float]:
    """The mean of a scalar per-frame series [n_frames] and its block standard error
    (:func:`default_n_blocks` blocks), as floats in the series' unit."""
    series = values.detach().to(torch.float64).reshape(-1)
    return float(series.mean()), float(block_standard_error(series, default_n_blocks(series.shape[0])))
