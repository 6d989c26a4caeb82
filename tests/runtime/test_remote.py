"""Decoder.fetch over real HTTP servers on 127.0.0.1: the same answers as a local decode, fewer
bytes when the controller stops early, and a typed error with the last complete level's result
for every fault (tests/runtime/http_servers.py starts the servers)."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.runtime import BitstreamError, CorruptChunkError, level_boundaries
from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.codec import read_layout
from edge_sdk.runtime.controller import checkpoint_levels
from edge_sdk.runtime.errors import (ByteCapError, ConnectionLostError, FetchError, FetchTimeoutError, HTTPStatusError,
                                     RangeNotSatisfiableError, RemoteStreamError, RemoteTruncatedError,
                                     StreamChangedError)
from edge_sdk.runtime.pipeline import DEEPEST, Decoder, Encoder
from edge_sdk.runtime.remote import FetchPolicy, RemoteStream, http_pool
from helpers import HTTPServerProcess, random_controller

pytest.importorskip("urllib3")
#: one retry and timeouts that a loaded CI machine still meets: every fault test ends within seconds
POLICY = FetchPolicy(initial_bytes=256, connect_timeout_s=5.0, read_timeout_s=5.0, request_timeout_s=10.0, retries=1,
                     backoff_s=0.01)


@pytest.fixture(scope="module")
def decoders(tiny_bundle):
    """(decoder without a controller, decoder with a random one, encoder), one backend."""
    backend = open_backend("ort:cpu", threads=1)
    bundle = Bundle.load(tiny_bundle)
    with_controller = dataclasses.replace(bundle, controller=random_controller())
    return Decoder(bundle, backend), Decoder(with_controller, backend), Encoder(bundle, backend)


@pytest.fixture(scope="module")
def served(decoders, tmp_path_factory):
    """The served folder: a.edgt, another stream, a truncated and a corrupted copy, an empty file."""
    data = pytest.importorskip("skimage.data")
    encoder = decoders[2]
    root = tmp_path_factory.mktemp("served")
    stream = encoder.encode(data.coffee()[:150, :200])
    other = encoder.encode(data.chelsea()[:140, :180])
    ends = level_boundaries(stream)
    (root / "a.edgt").write_bytes(stream)
    (root / "other-a.edgt").write_bytes(other)
    (root / "truncated.edgt").write_bytes(stream[: ends[5] + 3])
    corrupt = bytearray(stream)
    corrupt[ends[6] + 1] ^= 0x5A  # inside chunk 6: its run's check fails
    (root / "corrupt.edgt").write_bytes(bytes(corrupt))
    (root / "empty.edgt").write_bytes(b"")
    return root, stream


@pytest.fixture(scope="module")
def static(served):
    with HTTPServerProcess("static", served[0]) as server:
        yield server.url


@pytest.fixture(scope="module")
def faults(served):
    with HTTPServerProcess("faults", served[0]) as server:
        yield server.url


def same(remote, local):
    assert remote.top_k == local.top_k and remote.level == local.level and remote.levels == local.levels
    assert remote.bytes_used == local.bytes_used and remote.bytes_total == local.bytes_total
    assert remote.confidence == local.confidence


def test_starlette_static_files_honours_range_and_if_range(static, served):
    """The premise of the test server: check it, don't assume it."""
    import urllib3

    stream = served[1]
    first = urllib3.request("GET", f"{static}/a.edgt", headers={"Range": "bytes=10-99"})
    assert first.status == 206 and first.data == stream[10:100]
    assert first.headers["Content-Range"] == f"bytes 10-99/{len(stream)}"
    etag = first.headers["ETag"]
    assert urllib3.request("GET", f"{static}/a.edgt", headers={"Range": "bytes=10-99", "If-Range": etag}).status == 206
    assert urllib3.request("GET", f"{static}/a.edgt", headers={"Range": "bytes=10-99", "If-Range": '"x"'}).status == 200
    assert urllib3.request("GET", f"{static}/a.edgt", headers={"Range": f"bytes={len(stream)}-"}).status == 416


@pytest.mark.parametrize("level", [0, 1, 4, 9, DEEPEST])
def test_fetched_level_equals_the_local_decode(decoders, static, served, level):
    plain = decoders[0]
    stream = served[1]
    result = plain.fetch(f"{static}/a.edgt", level=level, policy=POLICY)
    same(result.prediction, plain.classify(stream, level=level))
    ends = level_boundaries(stream)
    need = ends[-1 if level == DEEPEST else level]
    # the prefix, then at most one range that ends on the level's boundary
    assert result.stats.requests == (1 if need <= POLICY.initial_bytes else 2)
    assert result.stats.bytes_fetched == max(need, min(POLICY.initial_bytes, len(stream)))
    assert result.stats.stream_size == len(stream) and result.stats.round_trips == result.stats.requests


def test_prefix_grows_once_when_it_ends_before_the_level_table(decoders, static, served):
    plain, stream = decoders[0], served[1]
    ends = level_boundaries(stream)
    for initial in (ends[0] + 1, 32):  # header and z and one byte of the table; part of the header
        tight = dataclasses.replace(POLICY, initial_bytes=initial)
        result = plain.fetch(f"{static}/a.edgt", level=0, policy=tight)
        same(result.prediction, plain.classify(stream, level=0))
        assert result.stats.requests == 2


def test_ranges_answered_short_are_asked_again(decoders, faults, served):
    plain, stream = decoders[0], served[1]
    result = plain.fetch(f"{faults}/short/a.edgt", policy=POLICY)
    same(result.prediction, plain.classify(stream))
    assert result.stats.requests >= -(-len(stream) // 300) and result.stats.bytes_fetched == len(stream)


def test_without_controller_fetch_reads_the_whole_stream(decoders, static, served):
    plain = decoders[0]
    result = plain.fetch(f"{static}/a.edgt")
    same(result.prediction, plain.classify(served[1]))
    assert result.stats.bytes_fetched == len(served[1]) and result.prediction.level == result.prediction.levels
    with pytest.raises(ValueError, match="controller"):
        plain.fetch(f"{static}/a.edgt", threshold=0.5)


def _probabilities(decoder, stream):
    ends = level_boundaries(stream)
    controller = decoder.bundle.controller
    return np.array([controller.probability(decoder._session_at(stream, k).logits()) for k in range(len(ends))])


@pytest.mark.parametrize("checkpoints", [0, 4, 8])
def test_fetch_stops_where_the_controller_trusts_the_answer(decoders, static, served, checkpoints):
    decoder, stream = decoders[1], served[1]
    ends = level_boundaries(stream)
    p = _probabilities(decoder, stream)
    candidates = checkpoint_levels(ends, checkpoints)
    # τ = the probability at a checkpoint past the prefix: the first level that reaches it is the stop
    pick = next(c for c in candidates if ends[c] > POLICY.initial_bytes)
    tau = float(p[pick])
    local = decoder.classify(stream, threshold=tau, checkpoints=checkpoints)
    result = decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=checkpoints, policy=POLICY)
    same(result.prediction, local)
    stats = result.stats
    assert result.prediction.level < result.prediction.levels and stats.bytes_fetched < len(stream)
    # every range after the prefix ends on a checkpoint's level boundary, so the bytes do too
    assert stats.bytes_fetched in [ends[c] for c in candidates] or stats.bytes_fetched == POLICY.initial_bytes
    assert stats.requests >= 2 and stats.levels_fetched == max(k for k, e in enumerate(ends) if e <= stats.bytes_fetched)
    # τ above every probability: the whole stream, as locally
    full = decoder.fetch(f"{static}/a.edgt", threshold=float(p.max()) + 1e-9, checkpoints=checkpoints, policy=POLICY)
    same(full.prediction, decoder.classify(stream, threshold=float(p.max()) + 1e-9, checkpoints=checkpoints))
    assert full.stats.bytes_fetched == len(stream)


def test_batching_trades_requests_for_bytes(decoders, static, served):
    decoder, stream = decoders[1], served[1]
    tau = float(_probabilities(decoder, stream).max()) + 1e-9  # never confident: every checkpoint is visited
    flat = dataclasses.replace(POLICY, batch_growth=1.0)
    one = decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=8, policy=flat)
    ends = level_boundaries(stream)
    beyond_prefix = [c for c in checkpoint_levels(ends, 8) if ends[c] > POLICY.initial_bytes]
    assert one.stats.requests == 1 + len(beyond_prefix)  # the prefix, then one request per checkpoint
    growing = decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=8, policy=POLICY)
    assert growing.stats.requests < one.stats.requests  # batches of 1, 2, 4, ... checkpoints
    # a bandwidth-delay product of half the stream: a first request that large, then 4 checkpoints a request
    link = dataclasses.replace(POLICY, link_rtt_s=1.0, link_bandwidth_bps=len(stream) * 8 / 2)
    batched = decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=8,
                            policy=dataclasses.replace(link, batch_growth=1.0))
    pairs = dataclasses.replace(flat, checkpoints_per_request=2)
    two = decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=8, policy=pairs)
    assert batched.stats.requests < two.stats.requests < one.stats.requests
    # a link whose bandwidth-delay product holds the whole stream: one request
    fast = dataclasses.replace(POLICY, link_rtt_s=0.05, link_bandwidth_bps=10e6)
    assert decoder.fetch(f"{static}/a.edgt", threshold=tau, checkpoints=8, policy=fast).stats.requests == 1
    for result in (one, growing, batched, two):  # batching changes the requests, never the answer
        same(result.prediction, decoder.classify(stream, threshold=tau, checkpoints=8))
    # answer_fraction: the first range after the prefix reaches half the stream
    half = dataclasses.replace(POLICY, answer_fraction=0.5)
    p = _probabilities(decoder, stream)
    first = next(c for c in checkpoint_levels(ends, 8) if ends[c] > POLICY.initial_bytes)
    early = decoder.fetch(f"{static}/a.edgt", threshold=float(p[first]), checkpoints=8, policy=half)
    assert early.stats.requests == 2 and early.stats.bytes_fetched >= len(stream) / 2
    same(early.prediction, decoder.classify(stream, threshold=float(p[first]), checkpoints=8))


def test_server_that_ignores_range_is_read_not_refused(decoders, faults, served):
    plain = decoders[0]
    result = plain.fetch(f"{faults}/norange/a.edgt", level=3, policy=POLICY)
    same(result.prediction, plain.classify(served[1], level=3))
    assert result.stats.full_body and result.stats.requests == 1 and result.stats.bytes_fetched == len(served[1])
    capped = dataclasses.replace(POLICY, max_bytes=len(served[1]) - 1)
    with pytest.raises(ByteCapError, match="cap"):
        plain.fetch(f"{faults}/norange/a.edgt", level=3, policy=capped)


@pytest.mark.parametrize("fault", ["replace", "relabel", "forget"])
def test_stream_replaced_mid_fetch_is_a_typed_error_with_the_prefix_result(decoders, faults, served, fault):
    plain, stream = decoders[0], served[1]
    with pytest.raises(StreamChangedError, match="replaced") as caught:
        plain.fetch(f"{faults}/{fault}/a.edgt", policy=POLICY)
    partial = caught.value.partial
    held = max(k for k, e in enumerate(level_boundaries(stream)) if e <= POLICY.initial_bytes)
    assert partial is not None and partial.prediction.level == held
    same(partial.prediction, plain.classify(stream, level=held))
    assert caught.value.stats.requests == 2


def test_truncated_file_gives_the_prefix_result_and_a_bitstream_error(decoders, static, served):
    plain, decoder, stream = decoders[0], decoders[1], served[1]
    ends = level_boundaries(stream)
    with pytest.raises(RemoteTruncatedError, match="truncated") as caught:
        plain.fetch(f"{static}/truncated.edgt", policy=POLICY)
    assert isinstance(caught.value, BitstreamError) and isinstance(caught.value, FetchError)
    same(caught.value.partial.prediction, plain.classify(stream, level=5))
    # a controller that answers before the cut never notices it
    p = _probabilities(decoder, stream)
    first = checkpoint_levels(ends, 0)[1]
    result = decoder.fetch(f"{static}/truncated.edgt", threshold=float(p[first]), checkpoints=0, policy=POLICY)
    same(result.prediction, decoder.classify(stream, threshold=float(p[first]), checkpoints=0))


def test_corrupted_file_stops_at_the_last_good_level(decoders, static, served):
    plain, stream = decoders[0], served[1]
    with pytest.raises(RemoteStreamError) as caught:
        plain.fetch(f"{static}/corrupt.edgt", policy=POLICY)
    # chunk 6 is damaged: the check that closes its run fails, and the decoder returns to the
    # level its previous check verified (docs/bitstream.md 2.4)
    checks = read_layout(stream)[1].checks
    closing = next(k for k in range(6, len(checks)) if checks[k])
    verified = max([k + 1 for k in range(6) if checks[k]], default=0)
    assert isinstance(caught.value.__cause__, CorruptChunkError) and caught.value.__cause__.chunk == closing
    same(caught.value.partial.prediction, plain.classify(stream, level=verified))


def test_not_a_stream_is_a_bitstream_error(decoders, static, served, tmp_path):
    (served[0] / "notes.txt").write_text("hello, not a stream\n" * 20)
    with pytest.raises(RemoteStreamError, match="not an edge-sdk stream") as caught:
        decoders[0].fetch(f"{static}/notes.txt", policy=POLICY)
    assert caught.value.partial is None


def test_server_killed_mid_body_is_a_connection_error(decoders, served):
    plain, stream = decoders[0], served[1]
    with HTTPServerProcess("faults", served[0]) as server:
        with pytest.raises(ConnectionLostError) as caught:
            plain.fetch(f"{server.url}/die/a.edgt", policy=POLICY)
        assert server.process.wait(10) == 0  # it did die
    error = caught.value
    assert error.stats.retries == POLICY.retries and error.stats.requests == 1 + 1 + POLICY.retries
    # the prefix, and whatever levels the half body completed
    assert error.partial is not None and error.partial.prediction.level >= 1
    same(error.partial.prediction, plain.classify(stream, level=error.partial.prediction.level))


def test_dropped_connection_resumes_after_the_bytes_received(decoders, faults, served):
    plain, stream = decoders[0], served[1]
    result = plain.fetch(f"{faults}/drop/a.edgt", policy=POLICY)
    same(result.prediction, plain.classify(stream))
    assert result.stats.retries == 1 and result.stats.bytes_fetched == len(stream)  # resumed, not restarted


@pytest.mark.parametrize("fault", ["slow", "trickle"])
def test_slow_server_times_out(decoders, faults, served, fault):
    plain, stream = decoders[0], served[1]
    # the slow server waits 6 s, the trickling one needs 50 ms a byte: both far past these limits
    policy = dataclasses.replace(POLICY, read_timeout_s=1.5, request_timeout_s=2.0, retries=0)
    with pytest.raises(FetchTimeoutError) as caught:
        plain.fetch(f"{faults}/{fault}/a.edgt", policy=policy)
    partial = caught.value.partial
    assert partial is not None and partial.prediction.level >= 1
    same(partial.prediction, plain.classify(stream, level=partial.prediction.level))


def test_range_not_satisfiable(decoders, static, faults):
    with pytest.raises(RangeNotSatisfiableError) as caught:
        decoders[0].fetch(f"{static}/empty.edgt", policy=POLICY)
    assert caught.value.status == 416 and caught.value.partial is None
    with pytest.raises(RangeNotSatisfiableError, match="shrank") as caught:
        decoders[0].fetch(f"{faults}/shrink/a.edgt", policy=POLICY)
    assert caught.value.partial is not None


def test_byte_cap(decoders, static, served):
    plain, stream = decoders[0], served[1]
    ends = level_boundaries(stream)
    policy = dataclasses.replace(POLICY, max_bytes=ends[8])
    assert plain.fetch(f"{static}/a.edgt", level=8, policy=policy).prediction.level == 8
    with pytest.raises(ByteCapError, match="cap") as caught:
        plain.fetch(f"{static}/a.edgt", policy=policy)
    assert caught.value.stats.bytes_fetched <= ends[8]
    same(caught.value.partial.prediction, plain.classify(stream, level=max(k for k, e in enumerate(ends)
                                                                           if e <= POLICY.initial_bytes)))


def test_redirects_statuses_and_retries(decoders, faults, static, served):
    plain, stream = decoders[0], served[1]
    result = plain.fetch(f"{faults}/redirect/a.edgt", policy=POLICY)
    same(result.prediction, plain.classify(stream))
    # the first request follows the 302; later ranges go straight to its target
    assert result.stats.redirects == 1 and result.stats.round_trips == result.stats.requests + 1
    with pytest.raises(HTTPStatusError, match="redirects"):
        plain.fetch(f"{faults}/loop/a.edgt", policy=POLICY)
    flaky = plain.fetch(f"{faults}/flaky/a.edgt", policy=POLICY)
    assert flaky.stats.retries == 1
    same(flaky.prediction, plain.classify(stream))
    with pytest.raises(HTTPStatusError) as caught:
        plain.fetch(f"{static}/missing.edgt", policy=POLICY)
    assert caught.value.status == 404 and caught.value.stats.retries == 0 and caught.value.partial is None
    with pytest.raises(ValueError, match="http"):
        plain.fetch("ftp://127.0.0.1/a.edgt")
    with pytest.raises(HTTPStatusError, match="asked for bytes from 0") as caught:
        plain.fetch(f"{faults}/badrange/a.edgt", policy=POLICY)
    assert caught.value.status == 206 and caught.value.partial is None


def test_unreachable_server_is_a_connection_error(decoders):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionLostError, match="reach") as caught:
        decoders[0].fetch(f"http://127.0.0.1:{port}/a.edgt", policy=POLICY)
    assert caught.value.stats.requests == 1 + POLICY.retries and caught.value.partial is None


def _open_sockets() -> int:
    fd_dir = Path("/proc/self/fd")
    return sum(1 for fd in fd_dir.iterdir() if os.path.realpath(fd).startswith("socket:")) if fd_dir.is_dir() else -1


def test_many_concurrent_fetches_share_bounded_connections(decoders, static, served):
    decoder, stream = decoders[1], served[1]
    p = _probabilities(decoder, stream)
    tau = float(np.median(p))
    want = decoder.classify(stream, threshold=tau)
    urls = [f"{static}/a.edgt"] * 196 + [f"{static}/missing.edgt"] * 4
    before = _open_sockets()
    pool = http_pool(POLICY, maxsize=16)
    try:
        results = list(decoder.fetch_many(urls, threshold=tau, concurrency=16, policy=POLICY, pool=pool))
        # 200 fetches, several requests each, over at most 16 connections
        assert 1 <= pool.connection_from_url(static).num_connections <= 16
    finally:
        pool.clear()
    assert [u for u, _ in results] == urls
    errors = [r for _, r in results if isinstance(r, FetchError)]
    assert len(errors) == 4 and all(isinstance(e, HTTPStatusError) and e.status == 404 for e in errors)
    for _, result in results[:196]:
        same(result.prediction, want)
    assert _open_sockets() <= before  # every connection closed with the pool
    # fetch_many's own pool: closed when the batch ends
    assert all(not isinstance(r, FetchError) for _, r in decoder.fetch_many(urls[:20], threshold=tau, concurrency=4,
                                                                           policy=POLICY))
    assert _open_sockets() <= before


def test_shared_pool_reuses_connections(static, served):
    pool = http_pool(POLICY, maxsize=2)
    try:
        for _ in range(5):
            stream = RemoteStream(f"{static}/a.edgt", POLICY, pool)
            stream.open()
            stream.fetch_to(len(served[1]))
            assert bytes(stream.data) == served[1]
            stream.close()
        assert pool.connection_from_url(static).num_connections == 1  # ten requests in sequence, one connection
    finally:
        pool.clear()


def test_batch_size_is_one_bandwidth_delay_product():
    assert FetchPolicy().batch_size(500.0) == 1 and FetchPolicy(checkpoints_per_request=3).batch_size(500.0) == 3
    assert [FetchPolicy().batch_size(500.0, n) for n in range(4)] == [1, 2, 4, 8]  # batch_growth 2
    assert [FetchPolicy(batch_growth=1.0).batch_size(500.0, n) for n in range(3)] == [1, 1, 1]
    lora = FetchPolicy(link_rtt_s=0.5, link_bandwidth_bps=50e3)  # 3125 bytes in flight per round trip
    assert lora.batch_size(600.0) == 5 and lora.batch_size(4000.0) == 1 and lora.batch_size(600.0, 1) == 10
    assert FetchPolicy(link_rtt_s=0.05, link_bandwidth_bps=10e6).batch_size(600.0) == 104
    assert FetchPolicy().first_request_bytes == 1024 and lora.first_request_bytes == 3125
    for bad in ({"link_rtt_s": 0.5}, {"answer_fraction": 1.5}, {"batch_growth": 0.5}, {"initial_bytes": 8}, {"read_timeout_s": 0},
                {"retries": -1}, {"max_bytes": 0}):
        with pytest.raises(ValueError):
            FetchPolicy(**bad)
