import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from edge_sdk.runtime.tables import default_entropy_tables, scale_to_index

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

Z_CHANNELS = 4


@pytest.fixture(scope="session")
def tables():
    return default_entropy_tables(Z_CHANNELS)


def make_latent(tables, shape=(8, 6, 6), seed=0, sigma_range=(0.1, 50.0), z_shape=(Z_CHANNELS, 2, 2)):
    """A Gaussian latent whose residuals follow the coded scales."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(sigma_range[0]), np.log(sigma_range[1]), shape))
    means = rng.normal(0.0, 2.0, shape).astype(np.float32)
    y = (means + rng.normal(0.0, 1.0, shape) * sigma).astype(np.float32)
    kidx = scale_to_index(sigma, tables.trit.scales)
    z = rng.integers(-6, 7, z_shape)
    return y, means, kidx, z


def prior_of(means, kidx):
    return lambda _z, _header: (means, kidx)


@pytest.fixture
def no_shipped_weights(monkeypatch, tmp_path):
    """Pretend lite0's trained weights are not installed (tests of the random-weights paths)."""
    monkeypatch.setattr("edge_sdk.export.models.lite0.shipped_weights_path", lambda: tmp_path / "no-shipped-weights")



SMALL_SIZES = ((64, 64), (128, 192))


@pytest.fixture(scope="session")
def lite0_export(tmp_path_factory):
    """lite0 with random codec/adapter (real Lite0 backbone), exported once at small sizes.

    Returns (bundle dir, its ``Manifest``, the torch model that was exported).
    """
    from unittest import mock

    from edge_sdk.export.bundle.exporter import prepare_model
    from edge_sdk.export.bundle.onnx_export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "lite0"
    with mock.patch("edge_sdk.export.models.lite0.shipped_weights_path", lambda: out.parent / "no-shipped-weights"):
        model, weights, _ = prepare_model("lite0", random_weights=True)
    manifest = export_bundle(model, out, quality=2.0, weights=weights, sizes=SMALL_SIZES)
    return out, manifest, model
