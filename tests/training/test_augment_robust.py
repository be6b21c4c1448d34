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


def test_augment_mixed_gives_the_robust_view_to_the_chosen_share_only():
    from medvault.training.augment import augment, augment_mixed, augment_robust

    batch = torch.rand(64, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    plain = augment(batch, 32, torch.Generator().manual_seed(3), strong=True)
    assert torch.equal(augment_mixed(batch, 32, torch.Generator().manual_seed(3), 0.0), plain)
    robust = augment_robust(batch, 32, torch.Generator().manual_seed(3))
    assert torch.equal(augment_mixed(batch, 32, torch.Generator().manual_seed(3), 1.0), robust)
    half = augment_mixed(batch, 32, torch.Generator().manual_seed(3), 0.5)
    again = augment_mixed(batch, 32, torch.Generator().manual_seed(3), 0.5)
    assert half.shape == (64, 1, 32, 32) and torch.equal(half, again)
    # which images were given the robust view: the first draw of the generator decides
    pick = torch.rand(64, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 10 < int(pick.sum()) < 54
    assert float(half.min()) >= 0.0 and float(half.max()) <= 1.0


def test_masks_follow_the_image_geometry_and_skip_the_intensity_jitter():
    from medvault.training.augment import augment, augment_with_masks

    batch = torch.zeros(8, 1, 64, 64)
    batch[:, :, 10:30, 5:25] = 0.8  # an off-centre square
    masks = (batch > 0).float()
    img, moved = augment_with_masks(batch, masks, 48, torch.Generator().manual_seed(4))
    # the image is exactly what augment gives with the same generator
    assert torch.equal(img, augment(batch, 48, torch.Generator().manual_seed(4), strong=True))
    assert moved.shape == (8, 1, 48, 48) and float(moved.min()) >= 0 and float(moved.max()) <= 1
    # the square moved with the image: where the mask is set, the image is bright, and the
    # mask is not jittered (its inside stays 1)
    inside = moved > 0.99
    assert int(inside.sum()) > 8 * 100
    assert float(img[inside].mean()) > 0.4 > float(img[moved < 0.01].mean())
    assert not torch.equal(moved[0], moved[1])  # different geometry per image


def test_remap_contrast_swaps_grey_levels_keeps_black_and_draws_nothing_when_off():
    from medvault.training.augment import remap_contrast

    levels = torch.tensor([0.0, 0.2, 0.45, 0.7, 0.95])
    batch = levels.repeat_interleave(8).reshape(1, 1, 5, 8).expand(256, 1, 5, 8).contiguous()
    gen = torch.Generator().manual_seed(5)
    out = remap_contrast(batch, gen, 1.0)
    assert out.shape == batch.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))  # background stays black
    assert torch.equal(out, remap_contrast(batch, torch.Generator().manual_seed(5), 1.0))
    # each image's levels keep their regions (one value per row) but not their order
    rows = out[:, 0, :, 0]
    assert torch.equal(out[:, 0], rows[:, :, None].expand(256, 5, 8))
    order = rows[:, 1:].argsort(dim=1)
    assert float((order != torch.arange(4)).any(dim=1).float().mean()) > 0.5
    # p = 0: the input itself and the generator untouched (the shipped recipes' random stream)
    g0 = torch.Generator().manual_seed(5)
    assert remap_contrast(batch, g0, 0.0) is batch
    assert torch.equal(torch.rand(3, generator=g0), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    # p = 0.5: about half the images change
    half = remap_contrast(batch, torch.Generator().manual_seed(6), 0.5)
    changed = (half != batch).flatten(1).any(1).float().mean()
    assert 0.3 < float(changed) < 0.7
