"""`edge-sdk calibrate` end to end on a small bundle, then `run` stopping by its controller."""

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from edge_sdk.cli import app
from edge_sdk.runtime.pipeline import Decoder
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.pipeline import DEEPEST

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tiny_bundle, tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    out = tiny_bundle
    root = tmp_path_factory.mktemp("calcli")
    bundle = root / "bundle"
    shutil.copytree(out, bundle)
    photos = root / "photos"
    photos.mkdir()
    images = {"coffee.png": data.coffee()[:192, :256], "chelsea.png": data.chelsea()[:192, :256],
              "astronaut.png": data.astronaut()[::2, ::2], "rocket.png": data.rocket()[:192, :256]}
    for name, img in images.items():
        Image.fromarray(img).save(photos / name)
    # labels that make some streams right and some wrong whatever the random adapter says
    decoder = Decoder(bundle, open_backend("ort:cpu", threads=2))
    from edge_sdk.runtime.pipeline import Encoder

    enc = Encoder(bundle, open_backend("ort:cpu", threads=2))
    rows = ["file,label"]
    for i, (name, img) in enumerate(images.items()):
        top = decoder.classify(enc.encode(img), level=DEEPEST).top_k[0][0]
        rows.append(f"{name},{top if i % 2 == 0 else (top + 1) % len(decoder.bundle.class_names)}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return bundle, photos, labels, root


def test_calibrate_then_run_with_threshold(setup):
    bundle, photos, labels, root = setup
    out = root / "report"
    result = runner.invoke(app, ["calibrate", "--bundle", str(bundle), "--images", str(photos), "--labels", str(labels),
                                 "--short-side", "0", "--out", str(out), "--tau", "0.5", "--tau", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["photos"] == 4 and [t["tau"] for t in report["taus"]] == [0.5, 0.9]
    assert 0 <= report["filter_ece"] <= 1 and report["evaluation"].startswith("grouped")
    for name in ("report.json", "reliability.png", "levels.png", "tau.png", "rate_accuracy.png",
                 "calibration_samples.npz"):
        assert (out / name).is_file(), name
    assert Bundle.load(bundle).controller is not None

    result = runner.invoke(app, ["run", "--input", str(photos), "--bundle", str(bundle), "--threshold", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 4 and all(0 <= r["confidence"] <= 1 and r["threshold"] == 0.5 for r in rows)
    assert all(r["confidence"] >= 0.5 or r["level"] == r["levels"] for r in rows), rows  # levels: the highest

    full = runner.invoke(app, ["run", "--input", str(photos), "--bundle", str(bundle), "--full-depth", "--json"])
    rows = [json.loads(line) for line in full.output.splitlines() if line.startswith("{")]
    assert all(r["bytes_used"] == r["bytes_total"] for r in rows)
    clash = runner.invoke(app, ["run", "--input", str(photos), "--bundle", str(bundle), "--full-depth",
                                "--threshold", "0.5"])
    assert clash.exit_code == 2 and "conflicts" in clash.output


def test_calibrate_refuses_bad_input(setup, tmp_path):
    bundle, photos, labels, _ = setup
    bad = tmp_path / "labels.csv"
    bad.write_text("coffee.png,not-a-class\n")
    result = runner.invoke(app, ["calibrate", "--bundle", str(bundle), "--images", str(photos), "--labels", str(bad),
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not-a-class" in result.output
    result = runner.invoke(app, ["calibrate", "--bundle", str(bundle), "--images", str(photos),
                                 "--eval-images", str(photos / "coffee.png"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "both" in result.output
    result = runner.invoke(app, ["calibrate", "--bundle", str(tmp_path), "--images", str(photos)])
    assert result.exit_code == 2 and "manifest.json" in result.output
