"""Seeded percentile-bootstrap confidence intervals.

Benchmarks here are small (100 to 1,319 prompts), so a compliance rate moves by several points
between models for noise alone; every reported rate carries a CI. The bootstrap is seeded so a
rerun writes byte-identical result files (Snakemake then sees no change), and vectorised with
numpy in bounded-memory chunks so 1,000 resamples of 80k rows stay fast and small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# At most this many float64 cells (about 32 MB) are materialised per chunk of resamples.
_MAX_CELLS = 4_000_000


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Return ``(mean, low, high)``: the sample mean and the percentile bootstrap interval.

    ``low``/``high`` are the ``alpha/2`` and ``1 - alpha/2`` quantiles of the means of
    ``n_resamples`` resamples drawn with replacement using ``numpy.random.default_rng(seed)``.
    The interval is clamped to contain the mean (only float round-off or a handful of resamples
    can break that). Raises ``ValueError`` for no values, non-finite values or bad parameters rather than
    returning NaN that would leak into tables. All-equal values give ``low == high == mean``.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {x.shape}")
    n = x.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci got NaN or infinite values")
    if np.all(x == x[0]):
        v = float(x[0])
        return v, v, v
    mean = float(x.mean())
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // n)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    # Error bars (mean - low, high - mean) must be non-negative; the percentile interval brackets
    # the mean except for float round-off or absurdly few resamples, so clamping changes nothing else.
    return mean, min(float(low), mean), max(float(high), mean)


def seed_interval(values: Sequence[float], alpha: float = 0.05, *, rate: bool = True) -> tuple[float, float, float]:
    """``(mean, low, high)`` over independent runs (seeds): Student's t interval of the mean.

    This is the spread a reader needs to know whether a claim survives a reseed, which a bootstrap
    over one run's prompts cannot show. One value has no spread: its interval is NaN. For a rate
    (``rate=True``) the interval is clipped to [0, 1]; a ratio such as recovery is not clipped.
    """
    from scipy import stats as st

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = float(st.t.ppf(1.0 - alpha / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    if not rate:
        return mean, mean - half, mean + half
    return mean, max(0.0, mean - half), min(1.0, mean + half)
