"""The C ABI end to end: `edge-sdk c-lib` builds libedgesdk once per module, the C and C++ examples
and tests/capi/capi_check.c are compiled against it with the system compiler through the generated
pkg-config file, and what they print is compared with the Python Decoder and Encoder on the same
streams: answers at every level, reconstruction bytes, error codes and messages, memory under a
repeated loop.

Needs a C/C++ compiler, pkg-config, Python's headers and a shared libpython; the module skips,
saying which is missing, on a machine without them (docs/c-api.md lists what to install).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_sdk import Bundle, Decoder, Encoder, open_backend
from edge_sdk.capi import HEADER, abi_version, toolchain_problem
from edge_sdk.capi.build import c_literal, fallible_functions
from edge_sdk.capi.glue import glue_functions
from edge_sdk.cli import app
from edge_sdk.runtime.bundle import attach_controller
from edge_sdk.runtime.controller import FEATURE_NAMES, Controller

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "c"
CHECK_SOURCE = Path(__file__).resolve().parent / "capi_check.c"
#: every run of a compiled program: generous, the first one warms numba's cache on a busy machine
RUN_TIMEOUT_S = 300


# --- no compiler needed -------------------------------------------------------------------------
def test_the_glue_implements_exactly_the_fallible_functions_of_the_header():
    assert sorted(f.name for f in fallible_functions(HEADER.read_text())) == glue_functions()


def test_fallible_functions_are_read_with_their_parameters():
    (feed,) = fallible_functions("EDGESDK_API edgesdk_status edgesdk_session_feed(edgesdk_session *session,\n"
                                 "    const uint8_t *data, size_t size, int32_t *level);")
    assert feed.name == "session_feed"
    assert feed.params == (("edgesdk_session *", "session"), ("const uint8_t *", "data"), ("size_t", "size"),
                           ("int32_t *", "level"))
    assert feed.arguments == "session, data, size, level"


def test_c_literal_escapes_what_c_would_misread():
    assert c_literal('/opt/a "b"\\c') == '"/opt/a \\"b\\"\\\\c"'
    assert c_literal("é\n") == '"\\303\\251\\012"'


def test_a_machine_without_python_headers_is_told_what_to_install(monkeypatch, tmp_path):
    import edge_sdk.capi.build as build

    monkeypatch.setattr(build.sysconfig, "get_paths", lambda: {"include": str(tmp_path / "no-include")})
    assert "python3-dev" in toolchain_problem()
    monkeypatch.setattr(build, "toolchain_problem", lambda: "no C compiler (cc) on PATH: install gcc")
    result = CliRunner().invoke(app, ["c-lib", "--out", str(tmp_path / "sdk")])
    assert result.exit_code == 2 and "no C compiler" in result.output
    assert not (tmp_path / "sdk").exists()


# --- fixtures that compile ----------------------------------------------------------------------
def _toolchain_or_skip() -> None:
    problem = toolchain_problem()
    if problem:
        pytest.skip(f"cannot build the C library here: {problem}")
    for tool in ("cc", "c++", "pkg-config"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH (Debian: apt-get install build-essential pkg-config)")


@pytest.fixture(scope="module")
def sdk(tmp_path_factory) -> Path:
    """The library, header and pkg-config file, built once by the CLI command users run."""
    _toolchain_or_skip()
    out = tmp_path_factory.mktemp("capi") / "sdk"
    result = CliRunner().invoke(app, ["c-lib", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _compile(sdk: Path, compiler: list[str], source: Path, exe: Path) -> Path:
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "edgesdk"], check=True, capture_output=True,
                           text=True, env={**os.environ, "PKG_CONFIG_PATH": str(sdk)}).stdout
    # the source before the libraries, so linkers that drop unused libraries (--as-needed) keep ours
    subprocess.run([*compiler, "-Wall", "-Wextra", "-Werror", str(source), *shlex.split(flags), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


@pytest.fixture(scope="module")
def programs(sdk) -> dict[str, Path]:
    return {
        "c": _compile(sdk, ["cc"], EXAMPLES / "decode.c", sdk.parent / "decode"),
        "cpp": _compile(sdk, ["c++", "-std=c++17"], EXAMPLES / "decode.cpp", sdk.parent / "decode_cpp"),
        "check": _compile(sdk, ["cc"], CHECK_SOURCE, sdk.parent / "capi_check"),
    }


def _photo(height: int = 150, width: int = 200) -> np.ndarray:
    """A deterministic RGB8 test image: smooth gradients with seeded noise."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(20)
    rgb = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=-1)
    return np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def backend():
    with open_backend("ort:cpu", threads=1) as b:  # the examples' decoders run threads=1 as well
        yield b


@pytest.fixture(scope="module")
def stream(tiny_bundle, backend, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("streams") / "photo.eds"
    path.write_bytes(Encoder(tiny_bundle, backend).encode(_photo()))
    return path


# --- the Python reference of the examples' loop ---------------------------------------------------
def _answer(decoder: Decoder, session, k: int) -> dict:
    prediction = session.classify(k=k)
    out = {"level": session.level, "levels": -1 if session.num_levels is None else session.num_levels,
           "bytes_used": session.bytes_used, "bytes_received": session.bytes_received,
           "top": [{"index": s.index, "name": s.name, "prob": s.probability} for s in prediction.top_k]}
    if decoder.bundle.controller is not None:
        out["confidence"] = session.confidence()
    return out


def reference_run(decoder: Decoder, data: bytes, chunk: int, k: int = 3):
    """What decode.c does, through the Python API: the lines it prints and the session it ends with."""
    controller = decoder.bundle.controller
    session = decoder.session()
    lines, shown, stopped = [], -1, "end of stream"
    for start in range(0, len(data), chunk):
        session.feed(data[start:start + chunk])
        if not session.ready or session.level == shown:
            continue
        shown = session.level
        if controller is not None and session.confident(controller.default_threshold):
            stopped = "confident"
            break
        lines.append(_answer(decoder, session, k))
    lines.append({**_answer(decoder, session, k), "final": True, "stopped": stopped})
    return lines, session


def assert_same_lines(printed: list[dict], expected: list[dict]) -> None:
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected):
        assert {k: v for k, v in got.items() if k not in ("top", "confidence")} == \
               {k: v for k, v in want.items() if k not in ("top", "confidence")}
        assert [(t["index"], t["name"]) for t in got["top"]] == [(t["index"], t["name"]) for t in want["top"]]
        np.testing.assert_allclose([t["prob"] for t in got["top"]], [t["prob"] for t in want["top"]], rtol=1e-6)
        assert ("confidence" in got) == ("confidence" in want)
        if "confidence" in want:
            assert got["confidence"] == pytest.approx(want["confidence"], rel=1e-8)


def run_example(program: Path, *args, stdin: bytes | None = None, env: dict | None = None):
    result = subprocess.run([str(program), *map(str, args)], input=stdin, capture_output=True,
                            timeout=RUN_TIMEOUT_S, env=env)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    return result.returncode, lines, result.stderr.decode()


def read_ppm(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    magic, width, height, maxval, pixels = raw.split(maxsplit=4)
    assert (magic, maxval) == (b"P6", b"255")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(int(height), int(width), 3)


# --- the library ----------------------------------------------------------------------------------
def test_c_lib_writes_a_library_exporting_every_function_of_the_header(sdk):
    major, minor = abi_version()
    assert sorted(p.name for p in sdk.iterdir()) == ["edge_sdk.h", "edgesdk.pc", "libedgesdk.so",
                                                     f"libedgesdk.so.{major}"]
    assert (sdk / "libedgesdk.so").resolve() == (sdk / f"libedgesdk.so.{major}").resolve()
    assert (sdk / "edge_sdk.h").read_text() == HEADER.read_text()
    pc = (sdk / "edgesdk.pc").read_text()
    assert f"prefix={sdk}\n" in pc and "-ledgesdk" in pc and "-Wl,-rpath,${libdir}" in pc
    declared = re.findall(r"EDGESDK_API\s+[\w\s*]+?\b(edgesdk_\w+)\s*\(", HEADER.read_text())
    assert len(declared) > 20
    lib = ctypes.CDLL(str(sdk / "libedgesdk.so"))  # loading starts no Python; these two calls need none
    missing = [name for name in declared if not hasattr(lib, name)]
    assert missing == []
    lib.edgesdk_abi_version.restype = ctypes.c_uint32
    assert lib.edgesdk_abi_version() == (major << 16) | minor
    assert not hasattr(lib, "edgesdk__py_session_feed")  # the glue's half stays hidden


def test_c_lib_refuses_a_folder_it_did_not_write(tmp_path):
    _toolchain_or_skip()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"x")
    result = CliRunner().invoke(app, ["c-lib", "--out", str(tmp_path / "photos")])
    assert result.exit_code == 2 and "not an earlier" in result.output
    assert (tmp_path / "photos" / "keep.jpg").read_bytes() == b"x"


# --- the examples against the Python Decoder ---------------------------------------------------------
@pytest.mark.parametrize("program, chunk, via_stdin", [("c", 97, False), ("cpp", 1, True)])
def test_examples_print_the_python_decoders_answers_level_by_level(programs, tiny_bundle, backend, stream, tmp_path,
                                                                     program, chunk, via_stdin):
    data = stream.read_bytes()
    ppm = tmp_path / "out.ppm"
    args = [tiny_bundle, "-" if via_stdin else stream, "--chunk", chunk, "--threads", 1, "--ppm", ppm]
    rc, lines, err = run_example(programs[program], *args, stdin=data if via_stdin else None)
    assert rc == 0, err
    decoder = Decoder(tiny_bundle, backend)
    expected, session = reference_run(decoder, data, chunk)
    assert_same_lines(lines, expected)
    assert lines[-1]["level"] == lines[-1]["levels"] == session.num_levels  # no controller: the whole stream
    assert len(lines) > 3  # several levels were answered on the way
    np.testing.assert_array_equal(read_ppm(ppm), session.reconstruct())


@pytest.fixture(scope="module")
def controlled_bundle(tiny_bundle, backend, stream, tmp_path_factory):
    """The tiny bundle with a controller (P(correct) rising with the top-1 probability) whose default
    τ is met part-way through the test stream: the examples must stop there."""
    out = tmp_path_factory.mktemp("controlled") / "tiny"
    shutil.copytree(tiny_bundle, out)
    n = len(FEATURE_NAMES)
    coef = np.zeros(n)
    coef[FEATURE_NAMES.index("conf_max")] = 40.0
    controller = Controller(feature_names=FEATURE_NAMES, clip_low=np.full(n, -1e9), clip_high=np.full(n, 1e9),
                            mean=np.zeros(n), scale=np.ones(n), coef=coef, intercept=-24.0, fitted_on={},
                            classifier_sha256=Bundle.load(out).graphs["classifier"].sha256)
    # the confidences the examples will see at each new level, reading 97 bytes at a time as the test does
    session, data, confidences, shown = Decoder(tiny_bundle, backend).session(), stream.read_bytes(), [], -1
    for start in range(0, len(data), 97):
        session.feed(data[start:start + 97])
        if session.ready and session.level != shown:
            shown = session.level
            confidences.append(float(controller.probability(session.logits())))
    assert len(set(confidences)) > 2, confidences
    tau = max(confidences[:-1])  # first met before the last level
    attach_controller(out, dataclasses.replace(controller, default_threshold=tau))
    return out


@pytest.mark.parametrize("program", ["c", "cpp"])
def test_examples_stop_reading_once_the_controller_is_confident(programs, controlled_bundle, backend, stream, program):
    data = stream.read_bytes()
    rc, lines, err = run_example(programs[program], controlled_bundle, stream, "--chunk", 97, "--threads", 1)
    assert rc == 0, err
    expected, session = reference_run(Decoder(controlled_bundle, backend), data, 97)
    assert_same_lines(lines, expected)
    final = lines[-1]
    assert final["stopped"] == "confident" and final["bytes_received"] < len(data) and final["level"] < final["levels"]
    assert final["confidence"] >= Bundle.load(controlled_bundle).controller.default_threshold


# --- bad input ------------------------------------------------------------------------------------
def test_a_truncated_stream_gives_the_answer_at_the_last_complete_level(programs, tiny_bundle, backend, stream):
    data = stream.read_bytes()[: stream.stat().st_size * 2 // 3]
    rc, lines, err = run_example(programs["c"], tiny_bundle, "-", "--threads", 1, stdin=data)
    assert rc == 0, err
    expected, session = reference_run(Decoder(tiny_bundle, backend), data, 4096)
    assert_same_lines(lines, expected)
    assert 0 < lines[-1]["level"] < lines[-1]["levels"] and not session.complete


def _python_error(decoder: Decoder, data: bytes, chunk: int = 4096) -> str:
    """The message the Python API raises for the examples' loop over ``data``."""
    with pytest.raises(ValueError) as caught:
        reference_run(decoder, data, chunk)
    return str(caught.value)


@pytest.mark.parametrize("case, status", [
    ("empty", "EDGESDK_ERR_NOT_READY"),
    ("cut_in_header", "EDGESDK_ERR_NOT_READY"),
    ("corrupt_chunk", "EDGESDK_ERR_CORRUPT"),
    ("corrupt_header", "EDGESDK_ERR_CORRUPT"),
    ("foreign", "EDGESDK_ERR_FOREIGN_STREAM"),
])
def test_damaged_input_fails_cleanly_with_the_python_message(programs, tiny_bundle, backend, stream, case, status):
    data = bytearray(stream.read_bytes())
    if case == "empty":
        data = bytearray()
    elif case == "cut_in_header":
        data = data[:12]
    elif case == "corrupt_chunk":
        data[len(data) * 3 // 4] ^= 0x5A
    elif case == "corrupt_header":
        data[6] ^= 0x01
    else:
        data = bytearray(b"GIF89a" + bytes(500))
    rc, _, err = run_example(programs["c"], tiny_bundle, "-", "--threads", 1, stdin=bytes(data))
    assert rc == 2
    message = _python_error(Decoder(tiny_bundle, backend), bytes(data))
    assert err.strip().endswith(f"{status}: {message}")


def test_a_missing_bundle_fails_cleanly_with_the_python_message(programs, tmp_path, stream):
    from edge_sdk import BundleError

    with pytest.raises(BundleError) as caught:
        Bundle.load(tmp_path / "absent")
    for program in ("c", "cpp"):
        rc, lines, err = run_example(programs[program], tmp_path / "absent", stream)
        assert (rc, lines) == (2, [])
        assert f"EDGESDK_ERR_BUNDLE: {caught.value}" in err


def test_a_broken_python_environment_is_reported_not_crashed(programs, tiny_bundle, stream, tmp_path):
    """When edge_sdk cannot be imported in the embedded interpreter, every call says so."""
    fake = tmp_path / "shadow" / "edge_sdk"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('edge_sdk is broken on purpose')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    rc, lines, err = run_example(programs["c"], tiny_bundle, stream, env=env)
    assert (rc, lines) == (2, [])
    assert "EDGESDK_ERR_RUNTIME_INIT: edge-sdk's Python runtime did not start: ImportError: edge_sdk is broken on " \
           "purpose" in err


EXPECTED_STATUS = {
    "open_null_path": "EDGESDK_ERR_INVALID_ARGUMENT",
    "open_null_out": "EDGESDK_ERR_INVALID_ARGUMENT",
    "open_missing_bundle": "EDGESDK_ERR_BUNDLE",
    "open_bad_struct_size": "EDGESDK_ERR_INVALID_ARGUMENT",
    "open_bad_device": "EDGESDK_ERR_INVALID_ARGUMENT",
    "open_bad_reconstruction": "EDGESDK_ERR_INVALID_ARGUMENT",
    "class_name_out_of_range": "EDGESDK_ERR_INVALID_ARGUMENT",
    "default_threshold_no_controller": "EDGESDK_ERR_NO_CONTROLLER",
    "classify_before_header": "EDGESDK_ERR_NOT_READY",
    "image_size_before_header": "EDGESDK_ERR_NOT_READY",
    "reconstruct_before_header": "EDGESDK_ERR_NOT_READY",
    "feed_null_data": "EDGESDK_ERR_INVALID_ARGUMENT",
    "feed_empty": "EDGESDK_OK",
    "classify_k0": "EDGESDK_ERR_INVALID_ARGUMENT",
    "confidence_no_controller": "EDGESDK_ERR_NO_CONTROLLER",
    "confident_no_controller": "EDGESDK_ERR_NO_CONTROLLER",
    "reconstruct_small_buffer": "EDGESDK_ERR_BUFFER_TOO_SMALL",
    "reconstruct_null_buffer": "EDGESDK_ERR_INVALID_ARGUMENT",
    "reconstruct_ok": "EDGESDK_OK",
    "feed_past_end": "EDGESDK_ERR_CORRUPT",
    "level_after_past_end": "EDGESDK_OK",
    "feed_foreign": "EDGESDK_ERR_FOREIGN_STREAM",
    "feed_freed_session": "EDGESDK_ERR_INVALID_HANDLE",
    "free_freed_session": "EDGESDK_ERR_INVALID_HANDLE",
    "decoder_as_session": "EDGESDK_ERR_INVALID_HANDLE",
    "session_null": "EDGESDK_ERR_INVALID_HANDLE",
    "level_null_out": "EDGESDK_ERR_INVALID_ARGUMENT",
    "free_null": "EDGESDK_OK",
    "decoder_free": "EDGESDK_OK",
    "classify_after_decoder_free": "EDGESDK_OK",
    "session_free": "EDGESDK_OK",
    "decoder_free_again": "EDGESDK_ERR_INVALID_HANDLE",
    "encoder_bad_prior": "EDGESDK_ERR_INVALID_ARGUMENT",
    "encode_no_pixels": "EDGESDK_ERR_IMAGE",
    "encode_short_stride": "EDGESDK_ERR_INVALID_ARGUMENT",
    "encode_null_out": "EDGESDK_ERR_INVALID_ARGUMENT",
    "encode_ok": "EDGESDK_OK",
    "encoder_free": "EDGESDK_OK",
}


def test_misuse_of_every_kind_returns_its_status_and_a_message(programs, tiny_bundle, stream):
    result = subprocess.run([str(programs["check"]), "errors", str(tiny_bundle), str(stream)], capture_output=True,
                            text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    got = {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}
    assert {case: status for case, (status, _) in got.items()} == EXPECTED_STATUS
    assert all(message for status, message in got.values() if status != "EDGESDK_OK")
    # the session stays usable at its level after bytes past the end (the Python contract)
    assert ["level", str(Decoder.describe(stream.read_bytes())["levels"])] in rows
    assert got["feed_past_end"][1] == "7 bytes past the end of the stream " f"({stream.stat().st_size} bytes)"


def test_the_c_encoder_writes_the_python_encoders_stream(programs, tiny_bundle, backend, tmp_path):
    photo = _photo(70, 90)
    (tmp_path / "photo.rgb").write_bytes(photo.tobytes())
    result = subprocess.run([str(programs["check"]), "encode", str(tiny_bundle), str(tmp_path / "photo.rgb"), "90",
                             "70", str(tmp_path / "photo.eds")], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "photo.eds").read_bytes() == Encoder(tiny_bundle, backend).encode(photo)


def test_repeated_open_feed_free_does_not_grow_memory(programs, tiny_bundle, stream):
    """12 rounds of: open a decoder, 4 sessions fed in two parts, classified, reconstructed and fed
    bad bytes, a failed open, an encoder encoding, everything freed. Leaking the decoder and encoder
    handles grows this process by about 17 MB a round (measured by dropping the two frees), so
    8 rounds would add over 130 MB; without a leak RSS wanders by a few MB (allocator and ONNX
    Runtime arenas)."""
    result = subprocess.run([str(programs["check"]), "loop", str(tiny_bundle), str(stream), "12"],
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    rss_kb = [int(line.split("\t")[2]) for line in result.stdout.splitlines() if line.startswith("rss")]
    assert len(rss_kb) == 12
    growth_mb = (max(rss_kb[-3:]) - min(rss_kb[2:5])) / 1024  # after warm-up (first graphs, numba, arenas)
    assert growth_mb < 40, rss_kb


def test_threads_decode_at_once_and_agree(programs, tiny_bundle, backend, stream):
    """Six threads decode at once (three with their own decoder, three sessions of a shared one),
    and a second thread polls a session's level while a first feeds it: the header's thread rules."""
    result = subprocess.run([str(programs["check"]), "threads", str(tiny_bundle), str(stream)], capture_output=True,
                            text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    prediction = Decoder(tiny_bundle, backend).classify(stream.read_bytes())
    assert result.stdout.split() == ["threads", str(prediction.top_k[0].index), str(prediction.levels)]
