"""Encoder and Decoder on ONNX Runtime, end to end on CPU: levels, streaming, bad inputs."""

import numpy as np
import pytest

from edge_sdk.runtime.pipeline import DEEPEST, Decoder, Encoder
from edge_sdk.runtime import BackendError, BitstreamError, TrailingBytesWarning, level_boundaries
from edge_sdk.runtime.backends import open_backend


@pytest.fixture(scope="module")
def codec(tiny_bundle):
    out = tiny_bundle
    backend = open_backend("ort:cpu", threads=2)
    return Encoder(out, backend), Decoder(out, backend)


@pytest.fixture(scope="module")
def photo():
    data = pytest.importorskip("skimage.data")
    return data.coffee()[:150, :200]


def test_round_trip_every_level(codec, photo):
    enc, dec = codec
    data = enc.encode(photo)
    ends = level_boundaries(data)
    assert ends[-1] == len(data)
    for level in range(len(ends)):
        pred = dec.classify(data, level=level)
        assert pred.level == level  # every chunk holds at least its check, so levels never share an end
        assert pred.bytes_used == ends[level] and pred.bytes_total == len(data)
        probs = [c.probability for c in pred.top_k]
        assert len(probs) == 5 and all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
        assert pred.top_k[0].probability >= pred.top_k[-1].probability
    image = dec.reconstruct(data)
    assert image.shape == photo.shape and image.dtype == np.uint8
    full = dec.classify(data)
    assert full.level == full.levels == len(ends) - 1
    assert dec.classify(data, level=DEEPEST).level == full.level
    encoded = enc.encode_timed(photo)
    assert encoded.data == data
    assert set(encoded.timings_ms) == {"read", "analysis", "hyperprior", "entropy_encode"}


def test_encoder_resizes_to_the_classifier_scale(tiny_bundle, photo):
    out = tiny_bundle
    backend = open_backend("ort:cpu", threads=2)
    data = Encoder(out, backend, short_side=64).encode(photo)  # photo is 150 x 200
    assert Decoder.describe(data)["image_size"] == [64, 85]
    assert Decoder(out, backend).reconstruct(data).shape == (64, 85, 3)
    assert Decoder.describe(Encoder(out, backend, short_side=400).encode(photo))["image_size"] == [150, 200]


def test_reconstruct_into_a_caller_buffer(codec, photo):
    enc, dec = codec
    data = enc.encode(photo)
    level = len(level_boundaries(data)) // 2
    want = dec.reconstruct(data, level=level)
    raw = bytearray(photo.shape[0] * photo.shape[1] * 3)  # what a C caller would own
    out = np.frombuffer(raw, np.uint8).reshape(photo.shape)
    got = dec.reconstruct(data, level=level, out=out)
    assert got is out and np.array_equal(out, want) and bytes(raw) == want.tobytes()
    with pytest.raises(ValueError, match="shape"):
        dec.reconstruct(data, out=np.empty((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dec.reconstruct(data, out=np.empty(photo.shape, np.float32))


def test_streaming_matches_whole_stream(codec, photo):
    enc, dec = codec
    data = enc.encode(photo)
    session = dec.session()
    assert session.needs_more and not session.ready
    with pytest.raises(BitstreamError, match="not enough bytes"):
        session.classify()
    levels_seen = []
    for i in range(0, len(data), 53):
        session.feed(memoryview(data)[i : i + 53])
        if session.ready:
            levels_seen.append(session.level)
            assert session.verified_level <= session.level
    assert session.complete and not session.needs_more and session.verified_level == session.level
    assert levels_seen == sorted(levels_seen)
    np.testing.assert_array_equal(session.reconstruct(), dec.reconstruct(data))
    assert session.classify().top_k == dec.classify(data).top_k


def test_truncated_and_corrupt_streams(codec, photo):
    enc, dec = codec
    data = enc.encode(photo)
    ends = level_boundaries(data)
    cut = ends[0] + (ends[-1] - ends[0]) // 2  # mid-chunk: the partial chunk is simply not used yet
    assert dec.classify(data[:cut]).level == max(i for i, e in enumerate(ends) if e <= cut)
    with pytest.raises(BitstreamError):
        dec.classify(data[:10])
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    with pytest.raises(BitstreamError):
        dec.classify(bytes(damaged))
    short = next(j for j in range(1, len(ends)) if ends[j] > ends[j - 1])
    with pytest.raises(BitstreamError, match="needs"):
        dec.reconstruct(data[: ends[short - 1]], level=short)
    with pytest.raises(ValueError, match="level must lie"):
        dec.classify(data, level=len(ends))


def test_bytes_appended_to_a_complete_stream_are_ignored_with_a_warning(codec, photo):
    enc, dec = codec
    data = enc.encode(photo)
    full = dec.classify(data, level=DEEPEST)
    with pytest.warns(TrailingBytesWarning, match="1 bytes after the end of the stream"):
        appended = dec.classify(data + b"X")
    assert appended.top_k == full.top_k and appended.level == full.level == appended.levels
    with pytest.warns(TrailingBytesWarning):
        assert np.array_equal(dec.reconstruct(data + b"\x00" * 7), dec.reconstruct(data))


def test_stream_of_another_bundle_is_refused(codec, photo, tmp_path, tiny_bundle):
    import shutil

    from edge_sdk.runtime import Bundle

    out = tiny_bundle
    other = tmp_path / "other"
    shutil.copytree(out, other)
    import json

    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["quality"] = 3.0  # a different codec identity
    from edge_sdk.runtime.bundle import codec_id

    manifest["codec_id"] = codec_id(manifest["model"]["name"], 3.0, {n: g["sha256"] for n, g in manifest["graphs"].items()},
                                    bytes.fromhex(manifest["entropy"]["tables_digest"]),
                                    manifest.get("integer_prior", {}).get("sha256"),
                                    manifest["entropy"].get("channel_priority")).hex()
    (other / "manifest.json").write_text(json.dumps(manifest))
    data = codec[0].encode(photo)
    with pytest.raises(BitstreamError, match="bundle"):
        Decoder(Bundle.load(other), open_backend("ort:cpu")).classify(data)


def test_threshold_without_controller_is_an_explicit_error(codec, photo):
    enc, dec = codec
    with pytest.raises(ValueError, match="controller"):
        dec.classify(enc.encode(photo), threshold=0.8)


def test_backend_refuses_unavailable_cuda():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="CUDA"):
        open_backend("ort:cuda")
