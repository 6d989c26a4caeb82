"""The memory model: sizes parse, the manifest section is checked field by field, and a photo or
stream predicted to exceed max_memory is refused before its pixels or latent are allocated."""

import dataclasses
import shutil

import numpy as np
import pytest

from edge_sdk.runtime import LimitError
from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.bundle import Bundle, read_manifest, write_manifest
from edge_sdk.runtime.errors import BundleError
from edge_sdk.runtime.memory import MemoryBudget, MemoryLine, MemoryModel, fit_line, format_bytes, parse_bytes
from edge_sdk.runtime.memory_probe import probe_photo
from edge_sdk.runtime.pipeline import Decoder, Encoder


@pytest.mark.parametrize("text, value", [("1024", 1024), ("1K", 1024), ("1.5G", 3 << 29), ("800M", 800 << 20),
                                         ("512MiB", 512 << 20), (" 2 gb ", 2 << 30)])
def test_sizes_parse(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1.5Q", "-3G", "0"])
def test_bad_sizes_are_refused_with_an_example(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_budget_limits():
    assert MemoryBudget(None).limit is None and MemoryBudget("2G").limit == 2 << 30 and MemoryBudget(4096).limit == 4096
    auto = MemoryBudget("auto").limit
    assert auto is None or auto > 0
    with pytest.raises(ValueError, match="max_memory"):
        MemoryBudget(-5)
    shared = MemoryBudget("1G")
    assert MemoryBudget.of(shared) is shared


def test_fitted_line_takes_its_slope_from_numpy_and_bounds_every_point():
    # resident peaks that step (arena doubling) around a linear NumPy peak of 50 bytes per pixel
    points = [(3_000_000, 670_000_000, 150_000_000), (6_000_000, 1_050_000_000, 300_000_000),
              (12_000_000, 1_100_000_000, 600_000_000)]
    line = fit_line(points)
    assert abs(line.bytes_per_pixel - 50) < 1e-6
    assert all(line.at(px) >= rss for px, rss, _ in points)
    assert line.base_bytes == 750_000_000  # the 6 MP probe's arenas, the largest remainder
    flat = fit_line([(1_000_000, 500, 400), (2_000_000, 400, 300)])  # NumPy shrinking is noise: no slope
    assert flat.bytes_per_pixel == 0 and flat.base_bytes == 500


def _model(base=100 << 20, per_pixel=100.0) -> MemoryModel:
    line = MemoryLine(base, per_pixel)
    return MemoryModel({"encode": line, "decode": line, "run": line}, "ort:cpu", 2, ((1536, 2048), (2048, 3072)))


def test_manifest_section_round_trips_and_is_checked():
    doc = _model().to_dict()
    assert MemoryModel.from_dict(doc) == _model()
    for change, message in [
        (lambda d: d.pop("run"), "lacks the operation 'run'"),
        (lambda d: d["encode"].update(base_bytes=-1), "'base_bytes' must be a non-negative integer"),
        (lambda d: d["decode"].update(bytes_per_pixel="many"), "'bytes_per_pixel' must be a non-negative number"),
        (lambda d: d.update(threads=0), "'threads' must be a positive integer"),
        (lambda d: d.update(sizes=[[64, 64]]), "'sizes' must list at least two"),
    ]:
        broken = _model().to_dict()
        change(broken)
        with pytest.raises(BundleError, match=message):
            MemoryModel.from_dict(broken)


def test_prediction_names_its_parts():
    model = _model(base=200 << 20, per_pixel=100.0)
    assert model.predict("run", 1_000_000, 50 << 20) == (250 << 20) + 100_000_000
    with pytest.raises(LimitError, match=r"about .* \(50.00 MB already held, 200.00 MB of graphs and 100 bytes per pixel"):
        model.check("run", 12_000_000, 50 << 20, 1 << 30, "running x.jpg")
    assert model.check("run", 1_000_000, 50 << 20, None, "anything") > 0  # no limit: predicted, never refused


@pytest.fixture
def measured_bundle(tiny_bundle, tmp_path):
    """The tiny bundle with a memory section of 10 MB + 1000 bytes per pixel (hand-set numbers)."""
    out = tmp_path / "measured"
    shutil.copytree(tiny_bundle, out)
    write_manifest(out, dataclasses.replace(read_manifest(out), memory=_model(10 << 20, 1000.0)))
    return Bundle.load(out)


def test_encoder_refuses_before_reading_the_pixels(measured_bundle, tmp_path, monkeypatch):
    from PIL import Image

    photo = tmp_path / "big.png"
    Image.fromarray(probe_photo(512, 768)).save(photo)
    backend = open_backend("ort:cpu", threads=1)
    budget = MemoryBudget(None)
    limit = budget.start + (10 << 20) + 1000 * 512 * 768 // 2  # half of what the photo needs above the start
    import edge_sdk.runtime.pipeline as pipeline

    monkeypatch.setattr(pipeline, "read_image", lambda *a, **k: pytest.fail("pixels read before the memory check"))
    with pytest.raises(LimitError, match="encoding this 768×512 image would need about"):
        Encoder(measured_bundle, backend, max_memory=limit).encode(photo)
    monkeypatch.undo()
    assert Encoder(measured_bundle, backend, max_memory=None).encode(photo)  # no limit: encodes
    small = probe_photo(64, 64)  # 64×64 needs 14 MB above the start: fits
    assert Encoder(measured_bundle, backend, max_memory=limit).encode(small)


def test_decoder_refuses_before_the_latent_exists(measured_bundle):
    backend = open_backend("ort:cpu", threads=1)
    stream = Encoder(measured_bundle, backend, max_memory=None).encode(probe_photo(512, 768))
    budget = MemoryBudget(None)
    tight = budget.start + (10 << 20) + 1000 * 512 * 768 // 2
    decoder = Decoder(measured_bundle, backend, max_memory=tight)
    session = decoder.session()
    with pytest.raises(LimitError, match="decoding this 768×512 stream would need about"):
        session.feed(stream)
    assert not session.ready  # the prior and the plane state were never built
    full = Decoder(measured_bundle, backend, max_memory=None).reconstruct(stream)
    assert full.shape == (512, 768, 3) and full.dtype == np.uint8


def test_bundles_without_a_memory_section_are_bounded_by_pixels_only(tiny_bundle):
    assert Bundle.load(tiny_bundle).manifest.memory is None
    backend = open_backend("ort:cpu", threads=1)
    assert Encoder(tiny_bundle, backend, max_memory=1).encode(probe_photo(64, 64))  # nothing to predict with


def test_format_bytes():
    assert format_bytes(3 << 30) == "3.00 GB" and format_bytes(1536) == "1.50 KB" and format_bytes(12) == "12 B"
