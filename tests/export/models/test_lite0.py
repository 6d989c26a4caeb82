"""lite0: the re-wired EfficientNet-Lite0 equals the packaged network, shapes and qualities behave."""

import numpy as np
import pytest
import torch

from edge_sdk.export.models.base import select_quality_row
from edge_sdk.export.models.lite0 import ADAPTER_CHANNELS, Lite0Model
from edge_sdk.export.models.registry import create_model


@pytest.fixture(scope="module")
def model():
    m = Lite0Model().eval()
    m.load_pretrained_backbone()
    return m


def test_pixel_classifier_is_the_packaged_network_on_tflite_normalised_pixels(model):
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.pixel_classifier(x, 1.0)
        packaged = model.task_model((x * 255 - 127) / 128)
    assert torch.allclose(ours, packaged, atol=1e-5)


def test_teacher_is_its_stem_features_through_the_rest_of_the_backbone(model):
    # adapter training takes the teacher's logits from the features it distils towards
    x = torch.rand(2, 3, 192, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.classifier_from_features(model.pixel_features(x)),
                                   model.pixel_classifier(x, 2.0))


def test_pixel_classifier_recognises_a_real_photo(model):
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skimage_data.coffee()[:384, :576].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        top = int(model.pixel_classifier(img, 1.0).argmax())
    assert "espresso" in model.class_names()[top] or "cup" in model.class_names()[top]


@pytest.mark.parametrize("hw", [(64, 64), (128, 192), (320, 192)])
def test_shapes_follow_the_image(model, hw):
    h, w = hw
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        y = model.analysis(x, 2)
        z = model.hyper_analysis(y, 2)
        means, scales = model.hyper_synthesis(torch.round(z), 2)
        assert y.shape == (1, model.latent_channels, h // 16, w // 16)
        assert z.shape == (1, model.hyper_channels, h // 64, w // 64)
        assert means.shape == scales.shape == y.shape
        assert float(scales.min()) >= np.float32(0.11)
        assert model.synthesis(y, 2).shape == x.shape
        assert model.classifier(y, 2).shape == (1, 1000)
        assert model.adapter(y).shape == (1, ADAPTER_CHANNELS, h // 4, w // 4)
        assert model.pixel_features(x).shape == (1, ADAPTER_CHANNELS, h // 4, w // 4)


def test_fractional_quality_interpolates_gains_geometrically(model):
    with torch.no_grad():
        model.gain.table.copy_(torch.rand_like(model.gain.table) + 0.5)
    lo, hi = model.gain.table[1].abs(), model.gain.table[2].abs()
    assert torch.allclose(select_quality_row(model.gain.table, 2.5), (lo * hi).sqrt())
    assert torch.equal(select_quality_row(model.gain.table, 3), hi)
    for bad in (0, 0.99, 4.01, 9):
        with pytest.raises(ValueError, match="quality"):
            model.analysis(torch.rand(1, 3, 64, 64), bad)


def test_registry_builds_lite0_with_random_weights():
    a, b = create_model("lite0"), create_model("lite0")
    assert isinstance(a, Lite0Model)
    assert not torch.equal(a.g_a[0].weight, b.g_a[0].weight)


def test_z_prior_tables_cover_the_learned_quantiles():
    """After the auxiliary loss has placed the quantiles, the tables hold all but the tail mass."""
    model = Lite0Model(N=8, M=16)
    eb = model.entropy_bottleneck
    opt = torch.optim.Adam([eb.quantiles], lr=0.5)
    for _ in range(800):
        opt.zero_grad()
        eb.aux_loss().backward()
        opt.step()
    assert float(eb.aux_loss().detach()) < 1.0
    pmfs, offsets = model.z_prior_tables()
    assert len(pmfs) == len(offsets) == model.hyper_channels
    for pmf, off in zip(pmfs, offsets):
        assert off <= 0 <= off + len(pmf) - 1
        assert np.all(pmf > 0) and 0.99 < pmf.sum() <= 1.0 + 1e-6


def test_settle_quantiles_places_the_tails():
    eb = Lite0Model(N=8, M=16).entropy_bottleneck
    assert float(eb.aux_loss().detach()) > 10
    assert eb.settle_quantiles() < 1.0
