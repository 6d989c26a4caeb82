"""`edge-sdk models`, `export` and `inspect` on bundles: progress, JSON, clear errors."""

import json
import shutil

import numpy as np
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.runtime import Bundle, StreamInfo, encode_latent

runner = CliRunner()


def test_models_lists_the_registry():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert "lite0" in rows and rows["lite0"]["default_quality"] in rows["lite0"]["qualities"]


def test_export_without_weights_names_the_way_out(tmp_path, no_shipped_weights):
    result = runner.invoke(app, ["export", "--model", "lite0", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "--random-weights" in result.output and "--checkpoint" in result.output
    assert not (tmp_path / "b").exists()


def test_export_unknown_model(tmp_path):
    result = runner.invoke(app, ["export", "--model", "resnet9000", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "unknown model" in result.output and "lite0" in result.output


def test_export_random_weights_writes_a_verified_bundle(tmp_path, no_shipped_weights):
    out = tmp_path / "b"
    result = runner.invoke(app, ["export", "--model", "lite0", "--out", str(out), "--random-weights", "--json",
                                 "--no-memory-probe",
                                 "--quality", "1.5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["random_parts"] == ["adapter", "codec"] and summary["quality"] == 1.5
    assert max(summary["max_abs_diff"].values()) <= 1e-3
    assert Bundle.load(out).codec_id.hex() == summary["codec_id"]


def test_inspect_bundle_and_a_damaged_copy(tmp_path, tiny_bundle):
    out = tiny_bundle
    manifest = Bundle.load(out).manifest
    result = runner.invoke(app, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["model"] == "tiny_test" and info["verified"] and info["random_parts"] == ["adapter", "backbone", "codec"]
    assert set(info["graphs"]) == set(manifest.graphs)
    human = runner.invoke(app, ["inspect", str(out)])
    assert human.exit_code == 0 and "RANDOM WEIGHTS" in human.output
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    with open(damaged / "classifier.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    result = runner.invoke(app, ["inspect", str(damaged)])
    assert result.exit_code == 2 and "sha256" in result.output


def test_inspect_stream_against_a_bundle(tmp_path, tiny_bundle):
    out = tiny_bundle
    bundle = Bundle.load(out)
    rng = np.random.default_rng(0)
    shape = (bundle.latent_channels, 4, 4)
    y = rng.normal(0, 3, shape).astype(np.float32)
    kidx = np.full(shape, 40, dtype=np.int64)
    z = rng.integers(-2, 3, (bundle.manifest.model.hyper_channels, 1, 1))
    for codec_id, expected in ((bundle.codec_id, True), (bytes(16), False)):
        info = StreamInfo(codec_id=codec_id[:4], image_size=(64, 64), quality=2)
        path = tmp_path / f"{expected}.edgt"
        path.write_bytes(encode_latent(y, np.zeros_like(y), kidx, z, bundle.tables, info=info))
        result = runner.invoke(app, ["inspect", str(path), "--bundle", str(out), "--json"])
        assert result.exit_code == 0, result.output
        got = json.loads(result.output)
        assert got["bundle_match"] is expected


def test_export_force_never_deletes_what_is_not_a_bundle(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me")
    result = runner.invoke(app, ["export", "--model", "tiny_test", "--random-weights", "--out", str(notes), "--force"])
    assert result.exit_code == 2 and "not an edge-sdk bundle" in result.output
    assert (notes / "todo.md").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no .tmp or .old debris
