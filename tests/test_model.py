"""The multi-task SFCN and the tensor store."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest
import torch

from bgs_app.errors import BgsError
from bgs_app.model.network import SFCN, expected_dosage, masked_cross_entropy
from bgs_app.model.store import StoreItem, TensorStore, build_store
from bgs_app.templates import model_grid


def test_sfcn_shapes_any_grid_and_score_range():
    torch.manual_seed(0)
    net = SFCN(n_snps=5, channels=(4, 8, 8, 8, 8, 4)).eval()
    for shape in ((40, 48, 40), (54, 64, 54)):
        logits = net(torch.randn(2, 1, *shape))
        assert logits.shape == (2, 5, 3)
        score = expected_dosage(logits)
        assert score.shape == (2, 5) and (score >= 0).all() and (score <= 2).all()
    default = SFCN(n_snps=12)
    assert [m.out_channels for m in default.modules() if isinstance(m, torch.nn.Conv3d)] \
        == [32, 64, 128, 256, 256, 64, 36]
    with pytest.raises(ValueError):
        SFCN(n_snps=0)


def test_masked_cross_entropy_ignores_missing_genotypes():
    logits = torch.zeros(2, 2, 3)
    logits[0, 0, 2] = 5.0
    dos = torch.tensor([[2.0, float("nan")], [float("nan"), float("nan")]])
    loss = masked_cross_entropy(logits, dos)
    expected = -torch.log_softmax(logits[0, 0], -1)[2]
    assert torch.isclose(loss, expected)
    # Changing a logit of a missing genotype changes nothing.
    logits2 = logits.clone()
    logits2[1, 1] = torch.tensor([9.0, -3.0, 1.0])
    assert torch.isclose(masked_cross_entropy(logits2, dos), loss)
    weights = torch.tensor([[1.0, 1.0, 4.0], [1.0, 1.0, 1.0]])
    assert torch.isclose(masked_cross_entropy(logits, dos, weights), expected)
    all_missing = torch.full((2, 2), float("nan"))
    assert masked_cross_entropy(logits, all_missing).item() == 0.0


def _volumes(folder, n, resolution=4.0, seed=0):
    shape, affine = model_grid(resolution)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        path = folder / f"sub-{i:02d}_model.nii.gz"
        nb.Nifti1Image(rng.random(shape, dtype=np.float32) * 2, affine).to_filename(path)
        items.append(StoreItem(f"sub-{i:02d}", None, path))
    return items


def test_store_round_trip_and_refresh(tmp_path, caplog):
    import logging

    items = _volumes(tmp_path, 4)
    store = build_store(items, tmp_path / "store", progress=False)
    assert len(store) == 4 and store.grid["shape"] == [40, 48, 40]
    for i, item in enumerate(items):
        original = nb.load(item.source).get_fdata(dtype=np.float32)
        np.testing.assert_allclose(store[i], original, rtol=1e-3, atol=1e-3)  # float16
    reopened = TensorStore(tmp_path / "store")
    assert reopened.index["participant_id"].tolist() == [f"sub-{i:02d}" for i in range(4)]
    # Change one image: only it is read again.
    shape, affine = model_grid(4.0)
    nb.Nifti1Image(np.ones(shape, np.float32), affine).to_filename(items[2].source)
    with caplog.at_level(logging.INFO, logger="bgs_app"):
        store = build_store(items, tmp_path / "store", progress=False)
    assert "3 reused, 1 read" in caplog.text
    assert np.all(store[2] == 1.0)


def test_store_refuses_mixed_grids(tmp_path):
    items = _volumes(tmp_path, 2)
    other = tmp_path / "odd.nii.gz"
    shape, affine = model_grid(2.0)
    nb.Nifti1Image(np.zeros(shape, np.float32), affine).to_filename(other)
    with pytest.raises(BgsError, match="on another grid.*odd.nii.gz"):
        build_store([*items, StoreItem("sub-odd", None, other)], tmp_path / "store",
                    progress=False)
