"""Analysis and synthesis in overlapping tiles give the whole image's result; limits are one number."""

import numpy as np
import pytest

from edge_sdk.runtime import LimitError
from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.pipeline import Decoder, Encoder
from edge_sdk.runtime.tiling import core_for, run_tiled, tile_spans


@pytest.mark.parametrize("length, core, margin", [(10, 3, 1), (64, 64, 8), (65, 16, 16), (1, 4, 2), (100, 7, 0)])
def test_tile_cores_cover_the_axis_exactly_once(length, core, margin):
    covered = np.zeros(length, int)
    for start, stop, core_start, core_stop in tile_spans(length, core, margin):
        assert 0 <= start <= core_start < core_stop <= stop <= length
        assert core_stop - core_start <= core and core_start - start <= margin and stop - core_stop <= margin
        covered[core_start:core_stop] += 1
    assert (covered == 1).all()


def _strided_box(x: np.ndarray) -> np.ndarray:
    """A stand-in analysis: 5×5 box sums with zero padding, then every 4th position (receptive field ±2)."""
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    h, w = x.shape[2:]
    out = sum(padded[:, :, i:i + h, j:j + w] for i in range(5) for j in range(5))
    return out[:, :, ::4, ::4]


def test_run_tiled_reproduces_a_local_operator_and_its_stride():
    x = np.random.default_rng(0).normal(size=(1, 2, 40, 56))
    whole = _strided_box(x)
    tiled = run_tiled(_strided_box, x, scale_num=1, scale_den=4, core=8, margin=4, align=4)
    assert tiled.shape == whole.shape and np.allclose(tiled, whole)
    narrow = run_tiled(_strided_box, x, scale_num=1, scale_den=4, core=8, margin=0, align=4)
    assert not np.allclose(narrow, whole)  # without a margin the tile borders show: the margin is what works
    with pytest.raises(ValueError, match="multiples of 4"):
        run_tiled(_strided_box, x, scale_num=1, scale_den=4, core=6, margin=4, align=4)


def test_core_for_respects_the_pixel_budget():
    core = core_for(1 << 18, 64, 16)
    assert core % 16 == 0 and (core + 128) ** 2 <= 1 << 18
    latent = core_for(1 << 20, 4, 1, 256)
    assert (latent + 8) ** 2 * 256 <= 1 << 20


@pytest.fixture(scope="module")
def backend():
    return open_backend("ort:cpu", threads=2)


@pytest.fixture(scope="module")
def photo():
    data = pytest.importorskip("skimage.data")
    return data.astronaut()[:448, :400]  # pads to 448×448: 7×7 latent tiles at the smallest tile size


def test_tiled_encoder_and_decoder_agree_with_whole_image_runs(tiny_bundle, backend, photo):
    small = 1 << 16  # the smallest tile: several tiles per graph call even on this small photo
    whole_enc, tiled_enc = Encoder(tiny_bundle, backend), Encoder(tiny_bundle, backend, tile_pixels=small)
    y_whole, y_tiled = whole_enc.latent(photo).y, tiled_enc.latent(photo).y
    assert np.abs(y_whole - y_tiled).max() <= 1e-4 * max(1.0, np.abs(y_whole).max())
    data = whole_enc.encode(photo)
    whole = Decoder(tiny_bundle, backend).reconstruct(data)
    tiled = Decoder(tiny_bundle, backend, tile_pixels=small).reconstruct(data)
    assert tiled.shape == whole.shape == photo.shape
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # float order only, at most one grey level


def test_encoder_and_decoder_limits_are_one_number(tiny_bundle, backend, photo):
    limit = 448 * 448
    data = Encoder(tiny_bundle, backend, max_pixels=limit).encode(photo)  # exactly at the limit: accepted
    assert Decoder(tiny_bundle, backend, max_pixels=limit).classify(data).level >= 0  # and so it decodes
    with pytest.raises(LimitError, match="max_pixels"):
        Encoder(tiny_bundle, backend, max_pixels=limit - 1).encode(photo)
    with pytest.raises(LimitError, match="more than this decoder's limit"):
        Decoder(tiny_bundle, backend, max_pixels=limit - 64 * 64).classify(data)


def test_classifier_trunk_tiles_pool_to_the_whole_latents_logits(tiny_bundle, backend, photo):
    data = Encoder(tiny_bundle, backend).encode(photo)
    whole = Decoder(tiny_bundle, backend).session()
    tiled = Decoder(tiny_bundle, backend, classifier_tile_pixels=1 << 16).session()
    for s in (whole, tiled):
        s.feed(data)
    calls = []
    tiled._graphs.run = lambda name, _run=tiled._graphs.run, **feeds: calls.append(name) or _run(name, **feeds)
    got, want = tiled.logits(), whole.logits()
    # 448×448 pixels = 784 latent positions; a tile of 64 Ki pixels holds 256 with the margin: several trunk calls
    assert calls.count("classifier_trunk") > 1 and calls.count("classifier_head") == 1 and "classifier" not in calls
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert np.argmax(got) == np.argmax(want)


def test_pooled_features_needs_the_margin():
    """The tiled pooling matches the whole pooling with a margin, and visibly not without one."""
    from edge_sdk.runtime.tiling import pooled_features

    y = np.random.default_rng(1).normal(size=(1, 2, 48, 40))
    whole = _strided_box(y).mean(axis=(2, 3))
    kw = dict(scale_num=1, scale_den=4, tile_pixels=24 * 24 * 256, latent_stride=16)
    assert np.allclose(pooled_features(_strided_box, y, margin=4, **kw), whole, atol=1e-6)
    assert not np.allclose(pooled_features(_strided_box, y, margin=0, **kw), whole, atol=1e-6)


def test_the_last_of_several_tiles_may_release_the_stages_memory():
    x = np.random.default_rng(2).normal(size=(1, 1, 40, 40))
    calls = []

    def tagged(tag):
        return lambda tile: calls.append(tag) or _strided_box(tile)

    tiled = run_tiled(tagged("run"), x, scale_num=1, scale_den=4, core=8, margin=4, align=4, run_last=tagged("last"))
    assert calls.count("last") == 1 and calls[-1] == "last" and len(calls) == 25
    assert np.allclose(tiled, _strided_box(x))
    calls.clear()
    run_tiled(tagged("run"), x, scale_num=1, scale_den=4, core=40, margin=4, align=4, run_last=tagged("last"))
    assert calls == ["run"]  # one tile: nothing grew that the next call would not reuse


def test_onnx_runtime_releases_its_arena_without_changing_results(tiny_bundle, backend):
    from edge_sdk.runtime.backends import GraphSet

    graphs = GraphSet(Bundle.load(tiny_bundle), backend)
    y_hat = np.random.default_rng(3).normal(size=(1, graphs.bundle.latent_channels, 8, 12)).astype(np.float32)
    kept = graphs.run("synthesis", y_hat=y_hat)["image"]
    released = graphs.run_releasing("synthesis", y_hat=y_hat)["image"]
    assert np.array_equal(kept, released)
