"""Block-average standard errors against closed forms for independent and AR(1) series."""

import math

import pytest
import torch

from exprefine.blocking import block_standard_error


def test_independent_values_give_sigma_over_sqrt_n():
    # 400 independent columns of N(0, 1); each column's SE² estimate is (1/N)·χ²₉/9, so the mean
    # over columns of N·SE² is 1 with standard error sqrt(2/9)/sqrt(400) = 0.0236.
    gen = torch.Generator().manual_seed(1)
    n_frames, n_cols = 2000, 400
    values = torch.randn(n_frames, n_cols, generator=gen, dtype=torch.float64)
    se = block_standard_error(values, n_blocks=10)
    assert se.shape == (n_cols,)
    ratio = float((se**2).mean() * n_frames)
    assert abs(ratio - 1.0) < 4 * math.sqrt(2 / 9) / math.sqrt(n_cols)


def test_correlated_series_matches_the_ar1_closed_form():
    # AR(1) x_t = φ x_{t−1} + sqrt(1−φ²) ε_t has unit variance and Var(mean) → (1/N)(1+φ)/(1−φ);
    # blocks of 1,000 frames ≫ the correlation time 1/(1−φ) = 10 frames (bias ≈ 2φ/((1−φ)²·1000) ≈ 2 %).
    phi, n_frames, n_cols = 0.9, 10_000, 400
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(n_frames, n_cols, generator=gen, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[0] = noise[0]
    for t in range(1, n_frames):
        x[t] = phi * x[t - 1] + math.sqrt(1 - phi**2) * noise[t]
    se = block_standard_error(x, n_blocks=10)
    expected = (1 + phi) / (1 - phi) / n_frames
    ratio = float((se**2).mean()) / expected
    assert abs(ratio - 1.0) < 4 * math.sqrt(2 / 9) / math.sqrt(n_cols) + 0.02
    # the naive estimate would be far too small: the test can tell the difference
    naive = float(x.var(dim=0).mean()) / n_frames
    assert naive < 0.2 * expected


def test_each_block_is_reduced_on_its_own():
    # a nonlinear reduction (square of the mean): the SE is that of the blocks' squared means
    values = torch.arange(20, dtype=torch.float64).reshape(20, 1)

    def square_of_mean(v, w):
        return (w @ v) ** 2

    se = block_standard_error(values, n_blocks=2, reduce=square_of_mean)
    blocks = torch.tensor([4.5**2, 14.5**2], dtype=torch.float64)
    assert torch.allclose(se, blocks.std(unbiased=True).reshape(1) / math.sqrt(2))


def test_too_few_frames_and_bad_block_count():
    assert torch.isnan(block_standard_error(torch.ones(3), n_blocks=10))
    with pytest.raises(ValueError, match="n_blocks"):
        block_standard_error(torch.ones(10), n_blocks=1)


def test_mean_and_standard_error_of_a_short_series_uses_blocks_of_at_least_four_frames():
    from exprefine.blocking import default_n_blocks, mean_and_standard_error

    assert [default_n_blocks(n) for n in (3, 8, 20, 41, 1000)] == [2, 2, 5, 10, 10]
    # 20 frames in 5 blocks of means 0, 1, 2, 3, 4: SE = std(ddof=1)/√5 = √2.5/√5
    series = torch.arange(5, dtype=torch.float64).repeat_interleave(4)
    mean, se = mean_and_standard_error(series.to(torch.float32))
    assert mean == pytest.approx(2.0) and se == pytest.approx(math.sqrt(0.5), rel=1e-12)
