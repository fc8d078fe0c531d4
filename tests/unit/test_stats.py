"""Bootstrap CIs: right point estimate, sensible coverage, seeded, no NaN on degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from overrefusal import stats
from overrefusal.stats import bootstrap_ci


def test_point_estimate_and_interval_order() -> None:
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    mean, low, high = bootstrap_ci(values, n_resamples=2000, seed=3)
    assert mean == pytest.approx(0.7)
    assert 0.3 < low < mean < high <= 1.0
    # Normal approximation for a proportion: half-width ~ 1.96 * sqrt(.7*.3/10) = 0.28.
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 10), abs=0.1)


def test_seeded_and_deterministic() -> None:
    values = list(np.random.default_rng(1).random(57))
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_coverage_is_near_nominal() -> None:
    """Of 200 Bernoulli(0.3) samples of size 150, a 90% interval should cover p about 90% of the time."""
    rng = np.random.default_rng(0)
    p, hits, trials = 0.3, 0, 200
    for t in range(trials):
        sample = (rng.random(150) < p).astype(float)
        _, low, high = bootstrap_ci(list(sample), n_resamples=400, alpha=0.10, seed=t)
        hits += low <= p <= high
    assert 0.82 <= hits / trials <= 0.96


def test_wider_for_smaller_alpha_and_smaller_n() -> None:
    rng = np.random.default_rng(2)
    big = list((rng.random(800) < 0.5).astype(float))
    _, l90, h90 = bootstrap_ci(big, alpha=0.10)
    _, l99, h99 = bootstrap_ci(big, alpha=0.01)
    _, ls, hs = bootstrap_ci(big[:80], alpha=0.10)
    assert h99 - l99 > h90 - l90
    assert hs - ls > h90 - l90


def test_degenerate_inputs() -> None:
    assert bootstrap_ci([1.0] * 7) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([0.1] * 3) == (0.1, 0.1, 0.1)
    assert bootstrap_ci([0.0]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([0.0, 1.0], alpha=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([0.0, 1.0], n_resamples=0)


def test_chunking_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked resampling (bounded memory) must draw the same stream as one big draw."""
    values = list(np.random.default_rng(4).random(51))
    whole = bootstrap_ci(values, n_resamples=300, seed=9)
    monkeypatch.setattr(stats, "_MAX_CELLS", 51 * 7)  # 7 resamples (an odd number of draws) per chunk
    assert bootstrap_ci(values, n_resamples=300, seed=9) == whole
