"""Chain-rule saliency for many SNPs equals captum's per-SNP attributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bgs_app.model.network import SFCN
from bgs_app.model.saliency import attribute_heads, group_saliency, heads_per_pass


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = SFCN(n_snps=40, channels=(4, 4, 4, 4, 4, 6), dropout=0.5)
    for module in net.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(1)
    vol = rng.random((32, 36, 32)).astype(np.float32)
    vol[:4] = 0
    return vol


def _chain_equals_captum(net, volume, heads, **kwargs) -> tuple[np.ndarray, float]:
    """The chain rule's attributions of ``heads``, checked against captum's per head to
    1e-5 of the largest; returns them and that scale."""
    chain = attribute_heads(net, volume, heads, strategy="chain", **kwargs)
    captum = attribute_heads(net, volume, heads, strategy="per-head", **kwargs)
    assert chain.shape == (len(heads), *volume.shape)
    scale = float(np.abs(captum).max())
    assert scale > 0
    np.testing.assert_allclose(chain / scale, captum / scale, atol=1e-5)
    return chain, scale


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_chain_rule_equals_captum_per_head(model, volume, method):
    _chain_equals_captum(model, volume, [0, 3, 17, 39], method=method, n_steps=8,
                         internal_batch_size=3)


def test_chain_rule_with_a_location_aware_read_out(volume):
    """Fewer poolings, a flattened last map, coordinate channels and GroupNorm: the head
    still reads out a linear map of ``model.n_features`` features, and the chain rule
    still equals captum."""
    torch.manual_seed(2)
    net = SFCN(n_snps=40, channels=(4, 4, 4, 4, 4, 2), poolings=3, readout="flatten",
               coord_channels=True, norm="group", grid_shape=volume.shape).eval()
    assert net.final_map == (4, 4, 4) and net.n_features == 2 * 64
    _chain_equals_captum(net, volume, [0, 5, 39], method="gradient")


def test_smoothgrad_by_the_chain_rule_is_the_mean_noisy_gradient(model, volume):
    """SmoothGrad by the chain rule: its noise is its own, so it is checked against
    the mean of chain-rule gradients at the same noisy copies."""
    heads = [1, 2]
    smooth = attribute_heads(model, volume, heads, method="smoothgrad", nt_samples=4,
                             internal_batch_size=4, noise_sd=0.1, strategy="chain", seed=5)
    noise = torch.randn((4, 1, *volume.shape), generator=torch.Generator().manual_seed(5))
    mean = np.mean([attribute_heads(model, volume + 0.1 * n[0].numpy(), heads,
                                    method="gradient", strategy="per-head")
                    for n in noise], axis=0)
    np.testing.assert_allclose(smooth, mean, atol=1e-5 * np.abs(mean).max())


def test_group_maps_do_not_depend_on_the_strategy(model, volume):
    snps = [f"s{j}" for j in range(40)]
    assert heads_per_pass(model, 40, volume.size) == 40  # 40 heads > 6 channels: one pass
    assert heads_per_pass(model, 5, volume.size) == 5
    volumes = [volume, volume[::-1].copy()]
    chained = group_saliency(model, volumes, snps, method="gradient")
    per_head = group_saliency(model, volumes, snps, method="gradient", chunk=4)
    for snp in ("s0", "s39"):
        np.testing.assert_allclose(chained[snp]["all"], per_head[snp]["all"], rtol=1e-4,
                                   atol=1e-6)


def test_correlation_maps_only_for_gated_scores_beyond_64_snps(model, volume):
    import pandas as pd

    from bgs_app.group.saliency import ALL_CORRELATION_MAPS, correlation_snps
    from bgs_app.model.saliency import GenotypeCorrelation

    snps = [f"s{j}" for j in range(40)]
    assert correlation_snps(snps, None) == snps  # few SNPs: every map
    many = [f"s{j}" for j in range(ALL_CORRELATION_MAPS + 6)]
    perf = pd.DataFrame({"model": "cnn", "snp": many, "r_dosage": 0.1, "p_r_dosage": 0.5})
    perf.loc[[3, 50], ["r_dosage", "p_r_dosage"]] = [0.6, 1e-8]
    assert correlation_snps(many, perf) == ["s3", "s50"]
    assert correlation_snps(many, None) == []
    rng = np.random.default_rng(0)
    dosages = rng.integers(0, 3, (6, 40)).astype(float)
    correlation = GenotypeCorrelation(snps, dosages, keep=["s1", "s7"])
    for i in range(6):
        for j, block in enumerate(attribute_heads(model, volume * (1 + 0.1 * i), range(40))):
            correlation.add(j, block, dosages[i, j])
    assert set(correlation.maps()) == {"s1", "s7"}


def test_chain_rule_of_an_ensemble_is_the_mean_of_its_networks(volume):
    """An ensemble's score is its networks' mean: the chain rule through every member
    equals captum on the ensemble, and the mean of the members' own attributions."""
    from bgs_app.model.network import Ensemble

    torch.manual_seed(3)
    members = [SFCN(n_snps=12, channels=(4, 4, 4, 4, 4, 2)).eval() for _ in range(2)]
    ensemble = Ensemble(members).eval()
    heads = [0, 4, 11]
    chain, scale = _chain_equals_captum(ensemble, volume, heads, method="gradient")
    each = [attribute_heads(m, volume, heads, strategy="per-head", method="gradient")
            for m in members]
    np.testing.assert_allclose(chain / scale, np.mean(each, axis=0) / scale, atol=1e-5)
