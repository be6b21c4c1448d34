"""Synthetic lesions for brain-mri (medvault.training.lesions, docs/models.md round 7)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _head(size: int = 96) -> torch.Tensor:
    """A bright skull ring around grey brain with a dark ventricle, on black air."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    r = torch.sqrt((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2)
    g = torch.zeros(size, size)
    g[r < 0.9] = 0.95  # skull and scalp
    g[r < 0.8] = 0.4  # brain
    g[(r < 0.12)] = 0.1  # ventricle
    return g


def test_a_lesion_is_painted_inside_the_brain_only_and_is_seeded():
    from medvault.training.lesions import paint_lesion

    g = _head()
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    r = torch.sqrt((yy - 48) ** 2 + (xx - 48) ** 2) / 48
    changed_sizes = []
    for seed in range(12):
        out = paint_lesion(g, torch.Generator().manual_seed(seed))
        assert torch.equal(out, paint_lesion(g, torch.Generator().manual_seed(seed)))
        changed = (out - g).abs() > 0.05
        assert not bool(changed[r >= 0.9].any())  # the air is left alone
        assert not bool(changed[(r >= 0.82) & (r < 0.9)].any())  # and so is the skull
        changed_sizes.append(int(changed.sum()))
    # each lesion is a region, not a speck or the whole brain (radius 6-16 % of 96 px)
    assert min(changed_sizes) >= 20 and max(changed_sizes) < 0.5 * int((r < 0.8).sum())
    assert not torch.equal(paint_lesion(g, torch.Generator().manual_seed(0)),
                           paint_lesion(g, torch.Generator().manual_seed(1)))


def test_only_no_tumour_slices_are_painted_and_relabelled_and_none_when_off():
    from medvault.training.lesions import paint_batch

    x = _head()[None, None].repeat(64, 1, 1, 1)
    y = torch.tensor([2, 0] * 32)  # 2 = notumor, 0 = glioma
    gen = torch.Generator().manual_seed(3)
    before = gen.get_state()
    assert paint_batch(x, y, gen, 0.0, 2, 0) == (x, y)
    assert torch.equal(gen.get_state(), before)  # p 0: the recipe's random stream is unchanged
    xo, yo = paint_batch(x, y, torch.Generator().manual_seed(3), 0.5, 2, 0)
    painted = (xo - x).abs().flatten(1).amax(1) > 0.05
    relabelled = yo != y
    assert torch.equal(painted, relabelled)  # painted exactly when relabelled
    assert bool((y[relabelled] == 2).all()) and bool((yo[relabelled] == 0).all())
    assert 6 <= int(relabelled.sum()) <= 26  # about half of the 32 no-tumour slices
    assert torch.equal(x, _head()[None, None].repeat(64, 1, 1, 1))  # the input is not modified


def test_the_evaluation_lesion_is_a_fixed_uint8_image_per_index():
    from medvault.training.lesions import painted

    img = (_head(224).numpy() * 255).astype(np.uint8)
    a, b = painted(img, 4), painted(img, 4)
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    assert not np.array_equal(a, img) and not np.array_equal(a, painted(img, 5))


def test_evaluate_refuses_synthetic_lesions_for_lung_ct():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="brain-mri only"):
        call_command("evaluate", "--model", "lung-ct", "--synthetic-lesions")
