import shutil

import pytest
from hypothesis import HealthCheck, settings

from edge_sdk.runtime.tables import default_entropy_tables
from helpers import SMALL_SIZES, TINY_BUNDLE, Z_CHANNELS

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@pytest.fixture(scope="session")
def tables():
    return default_entropy_tables(Z_CHANNELS)


@pytest.fixture
def no_shipped_weights(monkeypatch, tmp_path):
    """Pretend lite0's trained weights are not installed (tests of the random-weights paths)."""
    monkeypatch.setattr("edge_sdk.export.models.lite0.shipped_weights_path", lambda: tmp_path / "no-shipped-weights")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A session copy of the committed ``tiny_test`` bundle (tests/data/tiny_bundle): any bundle
    for tests of the pipeline, the CLI and calibration. Needs no torch and no export. A test that
    changes bundle files copies this folder first (the copy is shared by the whole session)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    shutil.copytree(TINY_BUNDLE, out)
    return out


@pytest.fixture(scope="session")
def lite0_export(tmp_path_factory):
    """lite0 with random codec/adapter (real Lite0 backbone), exported once at small sizes
    (about 35 s and torch): only for tests about lite0 or about exporting a real model.

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
