"""`edge-sdk eval`'s bookkeeping on a few tiny images (random-weights tiny_test bundle)."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edge_sdk.calibration.evaluation.evaluate import (
    NONPROGRESSIVE_HEADER_BYTES,
    PIXELS_CURVE,
    EvalSettings,
    Evaluator,
    bd_rates,
    curves,
    evaluate,
    gaussian_conditional_tables,
    teacher_stability,
)
from edge_sdk.cli import app
from edge_sdk.runtime import Bundle, level_boundaries
from edge_sdk.runtime.backends import open_backend

SETTINGS = EvalSettings(depth_points=4, nonprogressive_steps=2, jpeg_qualities=(10, 90), webp_qualities=(10, 90),
                        lpips=False)


@pytest.fixture(scope="module")
def tiny_images():
    skimage_data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((80, 64)))
    return [("coffee.png", skimage_data.coffee()[100:164, 200:296]), ("smooth.png", smooth)]


@pytest.fixture(scope="module")
def evaluator(tiny_bundle):
    out = tiny_bundle
    return Evaluator(Bundle.load(out), open_backend("ort:cpu", threads=1), SETTINGS)


@pytest.fixture(scope="module")
def records(evaluator, tiny_images, tmp_path_factory):
    return evaluate(evaluator, tiny_images, tmp_path_factory.mktemp("cache"), labels={"coffee.png": 7})


def test_our_points_count_every_byte_and_climb_monotonically(records, evaluator, tiny_images):
    for record, (_, rgb) in zip(records, tiny_images):
        ours = record["codecs"]["edge-sdk"]
        assert len(ours) == SETTINGS.depth_points
        levels = [p["level"] for p in ours]
        assert levels[0] == 0 and levels[-1] == ours[-1]["levels"] and levels == sorted(levels)
        assert [p["bytes"] for p in ours] == sorted(p["bytes"] for p in ours)
        assert ours[-1]["bytes"] == ours[-1]["bytes_total"]
        data = evaluator.encoder.encode(rgb)
        ends = level_boundaries(data)
        assert ours[-1]["bytes_total"] == len(data)
        assert [p["bytes"] for p in ours] == [ends[lv] for lv in levels]


def test_full_depth_and_the_finest_nonprogressive_step_decode_the_same_latent(records):
    for record in records:
        full, finest = record["codecs"]["edge-sdk"][-1], record["codecs"]["non-progressive"][0]
        assert finest["step"] == 1
        assert full["psnr"] == pytest.approx(finest["psnr"], abs=1e-3) and full["top1"] == finest["top1"]
        coarse = record["codecs"]["non-progressive"][1]
        assert NONPROGRESSIVE_HEADER_BYTES < coarse["bytes"] <= finest["bytes"]


def test_baseline_bytes_are_the_files_pillow_writes(records, tiny_images):
    rgb = tiny_images[0][1]
    for fmt, key, extra in (("JPEG", "jpeg", {"optimize": True}), ("WEBP", "webp", {"method": 6})):
        points = records[0]["codecs"][key]
        assert [p["quality"] for p in points] == [10, 90]
        for p in points:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, fmt, quality=p["quality"], **extra)
            assert p["bytes"] == buf.tell()
        assert points[0]["bytes"] < points[1]["bytes"] and points[0]["psnr"] < points[1]["psnr"]


def test_curves_average_per_setting(records):
    curve_set = curves(records)
    assert set(curve_set) == {"edge-sdk", "non-progressive", "jpeg", "webp", PIXELS_CURVE}
    ours, pixels = curve_set["edge-sdk"], curve_set[PIXELS_CURVE]
    assert [p["bpp"] for p in pixels] == [p["bpp"] for p in ours] and [p["psnr"] for p in pixels] == [p["psnr"] for p in ours]
    assert pixels[-1]["agreement"] == pytest.approx(
        np.mean([r["codecs"]["edge-sdk"][-1]["pixel_top1"] == r["reference"] for r in records]))
    point = curve_set["jpeg"][1]
    expected = np.mean([r["codecs"]["jpeg"][1]["bytes"] * 8 / (r["height"] * r["width"]) for r in records])
    assert point["bpp"] == pytest.approx(expected)
    agree = np.mean([r["codecs"]["jpeg"][1]["top1"] == r["reference"] for r in records])
    assert point["agreement"] == pytest.approx(agree)
    # only coffee.png carries a label, so accuracy averages over it alone
    assert point["accuracy"] == float(records[0]["codecs"]["jpeg"][1]["top1"] == 7)
    assert point["lpips"] is None and point["images"] == 2


def test_pixel_top1_is_the_teacher_on_our_decoded_picture(records, evaluator, tiny_images):
    for record, (_, rgb) in zip(records, tiny_images):
        session = evaluator.decoder.session()
        session.feed(evaluator.encoder.encode(rgb))
        assert record["codecs"]["edge-sdk"][-1]["pixel_top1"] == evaluator._pixel_top1(session.reconstruct())


def test_reference_confidence_is_the_teachers_softmax(records, evaluator, tiny_images):
    for record, (_, rgb) in zip(records, tiny_images):
        logits = evaluator._pixel_logits(rgb)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = np.sort(prob)[::-1]
        assert record["reference"] == int(np.argmax(prob))
        assert record["reference_confidence"] == pytest.approx(top[0])
        assert record["reference_margin"] == pytest.approx(top[0] - top[1])


def test_teacher_stability_and_confident_curves():
    def record(conf, jpeg_top1, ours_top1):
        point = {"bytes": 100, "psnr": 30.0, "lpips": None}
        return {"height": 10, "width": 10, "reference": 1, "reference_confidence": conf, "label": None,
                "codecs": {"jpeg": [dict(point, setting="q=95", top1=jpeg_top1)],
                           "webp": [dict(point, setting="q=95", top1=1)],
                           "edge-sdk": [dict(point, top1=ours_top1)], "non-progressive": []}}

    records = [record(0.9, 1, 1), record(0.8, 1, 0), record(0.2, 3, 0), record(0.1, 1, 1)]
    for r in records:  # a lower quality listed after the highest must not become the ceiling
        for codec in ("jpeg", "webp"):
            r["codecs"][codec][0]["quality"] = 95
            r["codecs"][codec].append(dict(r["codecs"][codec][0], setting="q=5", quality=5, top1=7))
    summary = teacher_stability(records, 0.5)
    assert summary["confident_images"] == 2 and summary["median_confidence"] == pytest.approx(0.5)
    assert summary["ceiling"] == {"jpeg q=95": 0.75, "webp q=95": 1.0}
    sure = curves(records, 0.5)
    assert sure["edge-sdk"][0]["images"] == 2 and sure["edge-sdk"][0]["agreement"] == 0.5
    assert curves(records)["edge-sdk"][0]["agreement"] == 0.5 and curves(records)["edge-sdk"][0]["images"] == 4


def test_cache_resumes_and_follows_the_settings(evaluator, tiny_images, records, tmp_path):
    seen = []
    first = evaluate(evaluator, tiny_images[:1], tmp_path, progress=lambda n, c: seen.append(c))
    again = evaluate(evaluator, tiny_images[:1], tmp_path, progress=lambda n, c: seen.append(c))
    assert seen == [False, True] and first == again
    other = EvalSettings(depth_points=3, nonprogressive_steps=1, jpeg_qualities=(50,), webp_qualities=(50,),
                         lpips=False)
    assert other.digest(evaluator.bundle) != SETTINGS.digest(evaluator.bundle)


def test_bd_rate_of_a_curve_shifted_in_rate():
    base = [{"bpp": b, "agreement": a, "psnr": p, "accuracy": None}
            for b, a, p in ((0.1, 0.2, 25.0), (0.2, 0.5, 28.0), (0.4, 0.7, 31.0), (0.8, 0.9, 34.0))]
    ours = [dict(p, bpp=p["bpp"] * 0.8) for p in base]
    result = bd_rates({"edge-sdk": ours, "jpeg": base})
    assert result["jpeg"]["agreement"] == pytest.approx(-0.2, abs=1e-9)
    assert result["jpeg"]["psnr"] == pytest.approx(-0.2, abs=1e-9)
    assert result["jpeg"]["accuracy"] is None


def test_gaussian_conditional_tables_cover_each_scale():
    scales = np.array([0.11, 1.0, 30.0])
    tables = gaussian_conditional_tables(scales)
    assert tables.num_channels == 3
    widths = tables.num_symbols
    assert widths[0] < widths[1] < widths[2] and widths[2] >= 2 * 6 * 30


def test_eval_command_writes_results_csv_and_plots(tiny_bundle, tiny_images, tmp_path):
    out = tiny_bundle
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, rgb in tiny_images:
        Image.fromarray(rgb).save(folder / name)
    target = tmp_path / "eval"
    args = ["eval", "--bundle", str(out), "--images", str(folder), "--out", str(target), "--no-lpips",
            "--depth-points", "3", "--steps", "2", "--jpeg-quality", "20", "--jpeg-quality", "80",
            "--webp-quality", "20", "--webp-quality", "80", "--threads", "1", "--short-side", "0"]
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["images"] == 2 and summary["reused_from_cache"] == 0
    assert set(summary["bd_rate_vs"]) == {"non-progressive", "jpeg", "webp", PIXELS_CURVE}
    for name in ("results.json", "curves.csv", "rate_agreement.png", "rate_psnr.png", "bit_allocation.png"):
        assert (target / name).is_file(), name
    rows = (target / "curves.csv").read_text().splitlines()
    assert rows[0].startswith("codec,setting,bpp") and len(rows) == 1 + 3 + 2 + 2 + 2 + 3  # the last 3: edge-sdk pixels
    result = CliRunner().invoke(app, args + ["--json"])
    assert json.loads(result.output.strip().splitlines()[-1])["reused_from_cache"] == 2
    result = CliRunner().invoke(app, ["eval", "--bundle", str(out), "--images", str(tmp_path / "nothing"),
                                      "--out", str(target)])
    assert result.exit_code == 2
