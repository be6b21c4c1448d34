"""The robust augmentation: shapes, range, reproducibility from the seed, and that it really
changes intensities (window jitter) and geometry."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")


def test_augment_robust_is_seeded_bounded_and_varied():
    from medvault.training.augment import augment_robust

    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    batch = ((x + y) / 2).expand(16, 1, 64, 64).contiguous()
    a = augment_robust(batch, 48, torch.Generator().manual_seed(7))
    b = augment_robust(batch, 48, torch.Generator().manual_seed(7))
    c = augment_robust(batch, 48, torch.Generator().manual_seed(8))
    assert a.shape == (16, 1, 48, 48)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    means = a.mean(dim=(1, 2, 3))
    assert float(means.max() - means.min()) > 0.1  # intensity really varies across the batch
