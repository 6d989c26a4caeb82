"""Measuring a bundle's memory: probes in fresh processes, a line per operation that bounds
every probe point, stored in the manifest without touching anything hashed."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from edge_sdk.calibration import memory as calibration_memory
from edge_sdk.calibration.memory import MemoryProbeError, measure_memory
from edge_sdk.cli import app
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.memory import OPERATIONS

runner = CliRunner()


def test_measure_memory_cli_stores_a_line_per_operation(tiny_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    before = Bundle.load(out)
    result = runner.invoke(app, ["measure-memory", "--bundle", str(out), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    lines = json.loads(result.output.strip().splitlines()[-1])
    after = Bundle.load(out)
    assert after.codec_id == before.codec_id  # nothing hashed changed
    model = after.manifest.memory
    assert model is not None and model.threads == 1 and set(model.lines) == set(OPERATIONS)
    for op in OPERATIONS:
        assert lines[op]["base_bytes"] > 0 and lines[op]["bytes_per_pixel"] >= 0
    # a run holds what an encode holds and more; two fresh processes doing the same work differ
    # in resident peak by a few pages (CI saw run 32 KiB under encode on the tiny bundle, whose
    # classifier adds almost nothing), so the comparison allows 1 MiB of that noise
    assert model.lines["run"].at(6_000_000) >= model.lines["encode"].at(6_000_000) - (1 << 20)
    shown = runner.invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0 and "B per pixel" in shown.output


def test_probe_sizes_must_exceed_every_tile(tiny_bundle):
    with pytest.raises(ValueError, match="must exceed"):
        measure_memory(tiny_bundle, sizes=((256, 256), (512, 512)))


def test_a_failing_probe_names_its_error(tiny_bundle, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "synthesis.onnx").write_bytes(b"not a graph")  # the probe's bundle load refuses it
    monkeypatch.setattr(calibration_memory, "PROBE_TIMEOUT_S", 120)
    with pytest.raises(MemoryProbeError, match="failed .*sha256"):
        measure_memory(broken, sizes=((1536, 1536), (1536, 2048)))
