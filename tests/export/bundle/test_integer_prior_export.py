"""The converter tracks the float hyper-synthesis, bundles carry the result, and streams use it."""

import json
import shutil

import numpy as np
import pytest
import torch

from edge_sdk import DEEPEST, Decoder, Encoder
from edge_sdk.export.models.base import CompressedDomainModel
from edge_sdk.export.bundle.integer_prior import convert_hyper_synthesis
from edge_sdk.export.models.hyper_synthesis import IntegerPriorUnsupported, layer_from_module
from edge_sdk.export.bundle.onnx_export import build_entropy_tables
from edge_sdk.export.models.registry import create_model
from edge_sdk.runtime import Bundle, BundleError, PriorMismatchError, PriorMode, read_header
from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.tables import scale_to_index


@pytest.fixture(scope="module")
def shipped_lite0():
    model = create_model("lite0")
    model.load_default_weights(["codec"])
    return model.eval()


def real_z(model, quality=2.0):
    """ẑ of real photos (scikit-image's, inside its wheel) at two scales."""
    skimage_data = pytest.importorskip("skimage.data")
    from edge_sdk.runtime.images import pad_image, read_image

    out = []
    for image in (skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea()):
        for step in (1, 2):
            x, _ = pad_image(read_image(np.ascontiguousarray(image[::step, ::step])), 64, 64)
            with torch.no_grad():
                y = model.analysis(torch.from_numpy(x), quality)
                out.append(torch.round(model.hyper_analysis(y, quality)))
    return out


def test_converted_lite0_tracks_the_float_hyper_synthesis(shipped_lite0):
    tables = build_entropy_tables(shipped_lite0)
    prior = convert_hyper_synthesis(shipped_lite0.hyper_synthesis_layers(2.0), tables)
    exact = near = total = 0
    mean_errors, mean_magnitude = [], 0.0
    for z in real_z(shipped_lite0):
        with torch.no_grad():
            means, scales = shipped_lite0.hyper_synthesis(z, 2.0)
        want = scale_to_index(scales[0].numpy(), tables.trit.scales).astype(np.int64)
        got_means, got = prior.parameters(z[0].numpy().astype(np.int64))
        exact += int((got == want).sum())
        near += int((np.abs(got - want) <= 1).sum())
        total += want.size
        mean_errors.append(np.abs(got_means - means[0].numpy()).ravel())
        mean_magnitude = max(mean_magnitude, float(means.abs().max()))
    assert near / total > 0.999  # never more than one bucket off, but for clipped outliers
    assert exact / total > 0.85
    errors = np.concatenate(mean_errors)
    # activations keep 10 bits of each layer's own range, so the error scales with the range of
    # the means (lite0's reached 7.4 with the weights of 2026-11, 20.7 with those of 2026-12):
    # 1 % of it leaves the rounding of three layers a margin of about two
    assert np.median(errors) < 0.01 and np.quantile(errors, 0.999) < 0.01 * mean_magnitude


def test_models_without_a_plain_hyper_synthesis_say_so():
    with pytest.raises(IntegerPriorUnsupported, match="float prior"):
        CompressedDomainModel().hyper_synthesis_layers(1.0)
    with pytest.raises(IntegerPriorUnsupported):
        layer_from_module(torch.nn.Conv2d(4, 4, 3, groups=2), 0.01)
    with pytest.raises(IntegerPriorUnsupported):
        layer_from_module(torch.nn.Linear(4, 4), 0.01)


def test_bundle_carries_a_verified_integer_prior(lite0_export, tmp_path):
    out, manifest, _ = lite0_export
    entry = manifest.integer_prior
    assert entry.details["index_agreement"]["within_one"] >= 0.99
    bundle = Bundle.load(out)
    assert bundle.integer_prior is not None and bundle.integer_prior.latent_channels == bundle.latent_channels
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    raw = bytearray((damaged / entry.file).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (damaged / entry.file).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(damaged)
    (damaged / entry.file).unlink()
    with pytest.raises(BundleError, match="missing"):
        Bundle.load(damaged)


@pytest.fixture(scope="module")
def photo():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.chelsea()[:120, :160]


def test_integer_streams_decode_alike_on_differently_configured_backends(lite0_export, photo):
    out, _, _ = lite0_export
    bundle = Bundle.load(out)
    data = Encoder(bundle, open_backend("ort:cpu", threads=1)).encode(photo)
    assert read_header(data).prior_mode == PriorMode.INTEGER
    decoded = []
    for threads in (1, 2):
        session = Decoder(bundle, open_backend("ort:cpu", threads=threads)).session()
        session.feed(data)
        assert session.complete
        decoded.append(session._latent.y_hat())
    np.testing.assert_array_equal(decoded[0], decoded[1])


def test_float_prior_is_still_available_and_modes_are_checked(lite0_export, photo):
    out, _, _ = lite0_export
    bundle = Bundle.load(out)
    backend = open_backend("ort:cpu")
    data = Encoder(bundle, backend, prior="float").encode(photo)
    assert read_header(data).prior_mode == PriorMode.FLOAT
    assert Decoder(bundle, backend).classify(data, level=DEEPEST).level > 0
    with pytest.raises(ValueError, match="prior must be one of"):
        Encoder(bundle, backend, prior="fixed")

    integer_stream = Encoder(bundle, backend).encode(photo)
    without = Bundle.load(out)
    without.integer_prior = None
    with pytest.raises(PriorMismatchError, match="integer prior"):
        Decoder(without, backend).classify(integer_stream)
    with pytest.raises(ValueError, match="no integer prior"):
        Encoder(without, backend, prior="integer")
    assert Encoder(without, backend).prior_mode == PriorMode.FLOAT


def test_codec_id_covers_the_integer_prior(lite0_export, tmp_path):
    out, manifest, _ = lite0_export
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    edited = json.loads((copy / "manifest.json").read_text())
    del edited["integer_prior"]
    (copy / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(BundleError, match="codec_id"):
        Bundle.load(copy)
