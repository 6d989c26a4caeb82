"""tiny_test: the registered test model is reproducible, lite0-shaped and says it is a test model."""

import torch

from edge_sdk.export.models.registry import create_model, get_model_info


def test_same_weights_every_build_and_the_global_rng_untouched():
    torch.manual_seed(1)
    before = torch.rand(3)
    torch.manual_seed(1)
    a = create_model("tiny_test")
    after = torch.rand(3)
    b = create_model("tiny_test")
    assert torch.equal(before, after)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_strides_and_outputs_follow_the_bundle_layout():
    model = create_model("tiny_test").eval()
    image = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        y = model.analysis(image, 2.0)
        z = torch.round(model.hyper_analysis(y, 2.0))
        means, scales = model.hyper_synthesis(z, 2.0)
        y_hat = torch.round(y - means) + means
        assert y.shape == (1, model.latent_channels, 8, 12) and z.shape == (1, model.hyper_channels, 2, 3)
        assert means.shape == scales.shape == y.shape and scales.min() >= 0.11
        assert model.classifier(y_hat, 2.0).shape == model.pixel_classifier(image, 2.0).shape == (1, 10)
        assert model.synthesis(y_hat, 2.0).shape == image.shape
        # the rescaled initialisation codes something: y is not all rounded to zero
        assert torch.round(y - means).abs().mean() > 1
    assert model.class_names() == [f"class_{i}" for i in range(10)]
    info = get_model_info("tiny_test")
    assert "test" in info.tags and info.description.startswith("TEST MODEL")
