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


def test_the_evaluation_lesion_is_a_fixed_uint8_image_and_mask_per_index():
    from medvault.training.lesions import painted

    img = (_head(224).numpy() * 255).astype(np.uint8)
    (a, mask_a), (b, mask_b) = painted(img, 4), painted(img, 4)
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    assert np.array_equal(mask_a, mask_b) and mask_a.dtype == bool and mask_a.any()
    assert not np.array_equal(a, img) and not np.array_equal(a, painted(img, 5)[0])
    changed = np.abs(a.astype(int) - img.astype(int)) > 12
    assert changed[mask_a].mean() > 0.5  # the mask is where the lesion shows


def test_evaluate_refuses_synthetic_lesions_for_lung_ct():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="brain-mri only"):
        call_command("evaluate", "--model", "lung-ct", "--synthetic-lesions")


def test_the_heat_map_check_finds_a_peak_on_the_lesion_and_one_beside_it():
    from medvault.training.lesions import LesionCamCheck, peak_in_lesion

    img = (_head(96).numpy() * 255).astype(np.uint8)
    lesion = np.zeros((96, 96), bool)
    lesion[40:52, 30:42] = True
    on = np.zeros((6, 6), np.float32)
    on[2, 2] = 1.0  # the 6 x 6 map's cell over the lesion (rows and columns 32-48 px)
    beside = np.zeros((6, 6), np.float32)
    beside[2, 5] = 1.0  # two cells to the right: more than the slack away
    assert peak_in_lesion(on, lesion) and not peak_in_lesion(beside, lesion)
    check = LesionCamCheck()
    check.add("a.png", img, lesion, on)
    check.add("b.png", img, lesion, beside)
    summary = check.summary()
    assert summary["tumour_answers"] == 2 and summary["peak_in_lesion"] == 1
    assert summary["share"] == 0.5 and summary["outside_examples"] == ["b.png"]
    assert 0.0 < summary["chance"] < 0.5  # the slack-dilated lesion's share of the brain
    # lesion centre (45.5, 35.5); peaks at the cells' centres (40, 40) and (40, 88), in 96 px
    dx, dy = summary["mean_peak_offset_xy"]
    assert dx == pytest.approx(((40 - 35.5) + (88 - 35.5)) / 2 / 96, abs=0.02)
    assert dy == pytest.approx((40 - 45.5) / 96, abs=0.02)
