"""The vector-search benchmark's data generators (bench/vector_search.py).

``matched`` must reproduce the profile measured on the real embeddings (bench/data/
embedding_profile.npz): unit vectors, the class proportions and the spectrum; queries are
fresh samples, not stored vectors. ``isotropic`` stays available as the stress case.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def vs():
    sys.path.insert(0, str(BENCH))
    try:
        import vector_search
    finally:
        sys.path.remove(str(BENCH))
    return vector_search


def _participation_ratio(x: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
    return float(eig.sum() ** 2 / (eig ** 2).sum())


@pytest.mark.parametrize("model", ["brain-mri", "lung-ct"])
def test_matched_generator_reproduces_the_profile(vs, model) -> None:
    gen = vs.MatchedGenerator.load(model)
    with np.load(vs.PROFILE) as npz:
        means, within, weights = npz[f"{model}/means"], npz[f"{model}/within"], npz[f"{model}/weights"]
    assert gen.dim == 128 and means.shape == (len(weights), 128)
    rng = np.random.default_rng(1)
    x = gen.sample(20_000, rng)
    assert x.dtype == np.float32 and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    # Class structure: the nearest class mean recovers the class proportions.
    cls = np.argmax(x @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T, axis=1)
    assert np.allclose(np.bincount(cls, minlength=len(weights)) / len(x), weights, atol=0.03)
    # Spectrum of the model (before normalisation) vs the sample: the same few effective dims.
    total = within + np.cov(means.T, aweights=weights, bias=True)
    eig = np.clip(np.linalg.eigvalsh(total), 0, None)
    assert _participation_ratio(x) == pytest.approx(float(eig.sum() ** 2 / (eig ** 2).sum()), rel=0.2)
    assert _participation_ratio(x) < 10  # far from the isotropic stress case


def test_matched_queries_are_fresh_and_isotropic_is_the_stress_case(vs) -> None:
    rng = np.random.default_rng(2)
    data, queries = vs.make_data("matched", 5000, 50, 128, rng, "brain-mri")
    assert queries.shape == (50, 128)
    assert (queries @ data.T).max() < 1 - 1e-7  # no query is a stored vector
    iso, iso_q = vs.make_data("isotropic", 5000, 50, 128, rng, "brain-mri")
    assert _participation_ratio(iso) > 5 * _participation_ratio(data)
    assert np.allclose(np.linalg.norm(iso_q, axis=1), 1, atol=1e-5)
