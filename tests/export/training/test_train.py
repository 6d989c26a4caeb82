"""Training stages run, resume exactly, log, plot, and export shippable weights (tiny sizes, CPU)."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from edge_sdk.export.models.checkpoint import load_checkpoint
from edge_sdk.export.training.data import prepare_dataset, scan_folder
from edge_sdk.export.models.lite0 import Lite0Model
from edge_sdk.export.models.registry import create_model
from edge_sdk.export.training.train import (TrainConfig, TrainError, coarsen_residual, compute_losses, export_weights,
                                   load_adapter_weights, rate_lambdas, spread_quality_gains, train)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        coarse = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((160, 160), Image.BICUBIC).save(photos / f"p{i}.png")
    prepare_dataset(scan_folder(photos, "CC0-1.0", split="train"), root / "ds", crop=64)
    return root / "ds"


#: what the training machinery is tested on: lite0's interface at a few channels (export/models/tiny.py);
#: the tests that are about lite0 itself name it
MODEL = "tiny_test"


def small_photos(folder, seed, size=(140, 100)):
    """Two smooth random photos of ``size`` (width, height) in a new ``folder``."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(2):
        coarse = rng.integers(0, 255, (10, 14, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize(size, Image.BICUBIC).save(folder / f"p{i}.png")
    return folder


def config(dataset, run, stage, **kw):
    return TrainConfig(stage=stage, dataset=str(dataset), run_dir=str(run), steps=kw.pop("steps", 2), batch_size=2,
                       crop=64, checkpoint_every=1, log_every=1, threads=kw.pop("threads", 2),
                       model=kw.pop("model", MODEL), **kw)


def test_codec_stage_resumes_to_the_same_weights(dataset, tmp_path):
    straight = config(dataset, tmp_path / "a", "codec", steps=3, lpips_weight=0.5)
    train(straight)
    first = config(dataset, tmp_path / "b", "codec", steps=2, lpips_weight=0.5)
    train(first)
    train(config(dataset, tmp_path / "b", "codec", steps=3, lpips_weight=0.5), resume=True)
    a = torch.load(tmp_path / "a/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b/last.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = list(csv.DictReader((tmp_path / "b/log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(float(r["bpp"]) > 0 and float(r["lpips"]) >= 0 for r in rows)
    assert (tmp_path / "b/curves.png").stat().st_size > 1000


def test_a_resume_after_a_kill_logs_each_step_once(dataset, tmp_path):
    import shutil

    run = tmp_path / "run"
    kw = dict(lpips_weight=0.0)
    train(config(dataset, run, "codec", steps=2, **kw))
    shutil.copy(run / "last.pt", tmp_path / "at2.pt")
    train(config(dataset, run, "codec", steps=3, **kw), resume=True)
    # killed after logging step 3 but before its checkpoint landed
    shutil.copy(tmp_path / "at2.pt", run / "last.pt")
    train(config(dataset, run, "codec", steps=3, **kw), resume=True)
    assert [int(r["step"]) for r in csv.DictReader((run / "log.csv").open())] == [1, 2, 3]


def test_stages_train_only_their_parameters(dataset, tmp_path):
    init = tmp_path / "init.safetensors"
    train(config(dataset, tmp_path / "codec", "codec", steps=1, lpips_weight=0.0))
    export_weights(tmp_path / "codec", init)
    for stage, moved in (("adapter", "adapter."), ("prior", "h_s.")):
        run = tmp_path / stage
        train(config(dataset, run, stage, init=str(init)))
        before = create_model(MODEL)
        load_checkpoint(before, init)
        after = torch.load(run / "last.pt", weights_only=False)["model"]
        ref = before.state_dict()
        changed = {k for k in after if not k.startswith("task_model.") and not torch.equal(after[k], ref[k])}
        assert changed and all(k.startswith(moved if stage == "adapter" else ("h_s.", "inverse_hyper_gain.", "entropy_bottleneck."))
                               for k in changed), (stage, sorted(changed)[:5])


def test_init_adapter_takes_only_the_adapter_from_its_file(dataset, tmp_path):
    from safetensors.torch import load_file, save_file

    train(config(dataset, tmp_path / "a", "codec", steps=1, lpips_weight=0.0))
    export_weights(tmp_path / "a", tmp_path / "a.safetensors")
    codec = load_file(str(tmp_path / "a.safetensors"))
    # another run's weights: every tensor moved, so a wrongly taken codec tensor shows
    adapter = {k: v + 0.5 for k, v in codec.items()}
    save_file(adapter, str(tmp_path / "b.safetensors"))
    model = create_model(MODEL)
    load_checkpoint(model, tmp_path / "a.safetensors")
    assert load_adapter_weights(model, str(tmp_path / "b.safetensors")) == sum(k.startswith("adapter.") for k in adapter)
    state = model.state_dict()
    for key in codec:
        source = adapter if key.startswith("adapter.") else codec
        assert torch.equal(state[key], source[key].to(state[key].dtype)), key
    save_file({k: v for k, v in codec.items() if not k.startswith("adapter.")}, str(tmp_path / "codec_only.safetensors"))
    with pytest.raises(TrainError, match="does not hold this model's adapter"):
        load_adapter_weights(model, str(tmp_path / "codec_only.safetensors"))
    with pytest.raises(TrainError, match="does not exist"):
        load_adapter_weights(model, str(tmp_path / "missing.safetensors"))
    from typer.testing import CliRunner

    from edge_sdk.cli import app

    result = CliRunner().invoke(app, ["train", "adapter", "--dataset", str(dataset), "--run-dir", str(tmp_path / "r"),
                                      "--init", str(tmp_path / "a.safetensors"), "--init-adapter",
                                      str(tmp_path / "codec_only.safetensors"), "--model", MODEL, "--crop", "64"])
    assert result.exit_code != 0 and "does not hold this model's adapter" in result.output


def test_adapter_run_exports_its_inits_codec_bit_for_bit(dataset, tmp_path):
    from safetensors.torch import load_file

    train(config(dataset, tmp_path / "c", "codec", steps=1, lpips_weight=0.0))
    export_weights(tmp_path / "c", tmp_path / "c.safetensors")
    codec = load_file(str(tmp_path / "c.safetensors"))
    # the codec export settled the quantiles; a second settle would still move them, and the adapter
    # run's export must not: its weights then hold a codec other than the one measured
    train(config(dataset, tmp_path / "a", "adapter", steps=2, init=str(tmp_path / "c.safetensors")))
    export_weights(tmp_path / "a", tmp_path / "a.safetensors")
    adapted = load_file(str(tmp_path / "a.safetensors"))
    assert set(adapted) == set(codec)
    changed = {k for k in codec if not torch.equal(codec[k], adapted[k])}
    assert changed and all(k.startswith("adapter.") for k in changed), sorted(changed)[:5]


def test_picm_objective_and_weight_export(dataset, tmp_path):
    metrics = train(config(dataset, tmp_path / "p", "codec", objective="picm", steps=1))
    assert "task" in metrics and metrics["task"] >= 0
    info = export_weights(tmp_path / "p", tmp_path / "w.safetensors")
    assert info["tensors"] > 0 and info["model"] == MODEL
    model = create_model(MODEL)
    report = load_checkpoint(model, tmp_path / "w.safetensors")
    assert not report.unexpected and all(k.startswith("task_model.") for k in report.missing)


def test_refusals(dataset, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/x").write_text("x")
    with pytest.raises(TrainError, match="not empty"):
        train(config(dataset, tmp_path / "busy", "codec"))
    with pytest.raises(TrainError, match="nothing to resume"):
        train(config(dataset, tmp_path / "new", "codec"), resume=True)
    with pytest.raises(TrainError, match="not a prepared dataset"):
        train(config(tmp_path, tmp_path / "r", "codec"))
    with pytest.raises(TrainError, match="stage"):
        config(dataset, tmp_path / "r", "gan")


def test_coarsened_residual_lies_on_the_plane_grid():
    y = torch.randn(3, 4, 5, 5) * 20
    means = torch.randn(3, 4, 5, 5)
    out = coarsen_residual(y, means, torch.tensor([0, 1, 2]))
    for i, step in enumerate((1, 3, 9)):
        r = (out[i] - means[i]) / step
        assert torch.allclose(r, r.round(), atol=1e-4)
        assert (out[i] - y[i]).abs().max() <= step / 2 + 1e-4


def test_default_lambdas_span_polc_rates():
    lam = rate_lambdas(TrainConfig(stage="codec", dataset="d", run_dir="r"), 4)
    assert len(lam) == 4 and lam == tuple(sorted(lam, reverse=True))


def test_cli_train_codec_then_export_weights(dataset, tmp_path):
    import json

    from typer.testing import CliRunner

    from edge_sdk.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "codec", "--dataset", str(dataset), "--run-dir", str(run), "--steps", "1",
                                 "--batch-size", "1", "--crop", "64", "--lpips-weight", "0", "--model", MODEL, "--json",
                                 "--lr-drop", "5", "--lr-drop", "9", "--lr-drop-factor", "0.3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["step"] == 1
    saved = json.loads((run / "config.json").read_text())
    assert saved["lr_drops"] == [5, 9] and saved["lr_drop_factor"] == 0.3
    again = runner.invoke(app, ["train", "codec", "--dataset", str(dataset), "--run-dir", str(run), "--steps", "1",
                                "--model", MODEL])
    assert again.exit_code == 2 and "--resume" in again.output
    out = runner.invoke(app, ["train", "export-weights", str(run), "--out", str(tmp_path / "w.safetensors")])
    assert out.exit_code == 0 and (tmp_path / "w.safetensors").is_file()


def test_fresh_lite0_qualities_start_at_distinct_rates():
    # all-ones gain rows made lite0's four qualities one model (same bpp at every q, measured)
    torch.manual_seed(0)
    model = Lite0Model().eval()
    gains = torch.stack([model.gain.row(q) for q in (1, 2, 3, 4)])
    inverse = torch.stack([model.inverse_gain.row(q) for q in (1, 2, 3, 4)])
    assert torch.allclose(gains[1:] / gains[:-1], torch.full_like(gains[1:], 2 ** 0.5))
    assert torch.allclose(gains * inverse, torch.ones_like(gains))
    x = torch.rand(2, 3, 64, 64)
    cfg = TrainConfig(stage="prior", dataset="d", run_dir="r")
    with torch.no_grad():
        bpp = [float(compute_losses(model, x, float(q), 0.0, cfg, None)["bpp_y"]) for q in (1, 4)]
        for param, _ in model.quality_gain_tables().values():
            param.fill_(1.0)
        collapsed = [float(compute_losses(model, x, float(q), 0.0, cfg, None)["bpp_y"]) for q in (1, 4)]
    assert bpp[1] > 1.25 * bpp[0]
    assert abs(collapsed[1] / collapsed[0] - 1) < 0.05


def test_gain_spread_keeps_the_reference_quality():
    model = Lite0Model()
    with torch.no_grad():
        for param, _ in model.quality_gain_tables().values():
            param.fill_(1.0)
    hyper_before = model.hyper_gain.table.clone()
    spread_quality_gains(model, 2.0, reference_quality=2)
    assert torch.allclose(model.gain.table[:, 0], torch.tensor([0.5, 1.0, 2.0, 4.0]))
    assert torch.allclose(model.inverse_gain.table[:, 0], torch.tensor([2.0, 1.0, 0.5, 0.25]))
    assert torch.equal(model.hyper_gain.table, hyper_before)
    with pytest.raises(TrainError, match="gain_spread"):
        TrainConfig(stage="codec", dataset="d", run_dir="r", gain_spread=0.5)


def test_gain_tables_learn_at_their_own_rate(dataset, tmp_path):
    init = tmp_path / "init.safetensors"
    train(config(dataset, tmp_path / "base", "codec", steps=1, lpips_weight=0.0))
    export_weights(tmp_path / "base", init, dtype=torch.float32)
    train(config(dataset, tmp_path / "g", "codec", steps=1, lpips_weight=0.0, init=str(init), lr=1e-6, gain_lr=0.05))
    before = create_model(MODEL)
    load_checkpoint(before, init)
    after = torch.load(tmp_path / "g/last.pt", weights_only=False)["model"]
    ref = before.state_dict()
    gain_move = (after["gain.table"] - ref["gain.table"]).abs().max()
    codec_move = max((after[k] - ref[k]).abs().max() for k in ref if k.startswith(("g_a.", "g_s.")))
    assert 0.02 < gain_move < 0.06 and codec_move < 1e-5  # Adam's first step is ±lr


def test_gain_spread_applies_once_and_resumes_exactly(dataset, tmp_path):
    init = tmp_path / "init.safetensors"
    train(config(dataset, tmp_path / "base", "codec", steps=1, lpips_weight=0.0))
    export_weights(tmp_path / "base", init, dtype=torch.float32)
    kw = dict(lpips_weight=0.0, init=str(init), gain_spread=1.5)
    train(config(dataset, tmp_path / "a", "codec", steps=2, **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=1, **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=2, **kw), resume=True)
    a = torch.load(tmp_path / "a/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b/last.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    start = create_model(MODEL)
    load_checkpoint(start, init)
    ratio = (a["gain.table"][3] / a["gain.table"][1]) / (start.gain.table[3] / start.gain.table[1])
    assert torch.allclose(ratio, torch.full_like(ratio, 1.5 ** 2), rtol=0.05)  # two steps of lr 1e-4·20 at most


def test_eval_during_training_logs_a_kodak_style_curve_and_keeps_resume_exact(dataset, tmp_path):
    from edge_sdk.export.training.train import psnr_at_bpp

    photos = small_photos(tmp_path / "eval", seed=5)
    kw = dict(lpips_weight=0.0, eval_dir=str(photos), eval_every=2)
    train(config(dataset, tmp_path / "a", "codec", steps=4, **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=2, **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=4, **kw), resume=True)
    a = torch.load(tmp_path / "a/last.pt", weights_only=False)
    b = torch.load(tmp_path / "b/last.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # measuring draws no randomness
    rows = list(csv.DictReader((tmp_path / "b/eval.csv").open()))
    assert [int(r["step"]) for r in rows] == [0] * 4 + [2] * 4 + [4] * 4
    assert {float(r["quality"]) for r in rows} == {1.0, 2.0, 3.0, 4.0}
    assert all(float(r["bpp"]) > 0 and 5 < float(r["psnr"]) < 60 for r in rows)
    # millisecond resolution: two tiny steps on a fast machine take well under 0.1 s
    assert float(rows[-1]["trained_seconds"]) >= float(rows[4]["trained_seconds"]) > 0
    assert (tmp_path / "b/eval.png").stat().st_size > 1000
    pts = [{"bpp": 0.2, "psnr": 25.0}, {"bpp": 0.8, "psnr": 31.0}]
    assert psnr_at_bpp(pts, 0.4) == pytest.approx(25.0 + 6.0 * np.log(2) / np.log(4))
    assert psnr_at_bpp(pts, 0.1) is None and psnr_at_bpp(pts, 1.0) is None


def test_origins_select_the_photos_and_jitter_stays_in_range(tmp_path):
    from edge_sdk.export.training.train import CropSet

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        coarse = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((160, 160), Image.BICUBIC).save(src / f"p{i}.png")
    sources = scan_folder(src, "CC0-1.0", split="train")
    for s in sources[:2]:
        s.origin = "imagenet-sample:train"
    prepare_dataset(sources, tmp_path / "ds", crop=64, protected=[])
    only = CropSet(tmp_path / "ds", 64, origins=("imagenet-sample",))
    assert set(only.images) == {"p0", "p1"}
    with pytest.raises(TrainError, match="no training photos whose origin"):
        CropSet(tmp_path / "ds", 64, origins=("git:",))
    jittered = CropSet(tmp_path / "ds", 64, color_jitter=0.4).batch(np.random.default_rng(0), 4)
    plain = CropSet(tmp_path / "ds", 64).batch(np.random.default_rng(0), 4)
    assert jittered.shape == plain.shape and 0.0 <= float(jittered.min()) and float(jittered.max()) <= 1.0
    assert not torch.equal(jittered, plain)
    # plain crops cannot exceed the stored crop size; scaled windows come from the whole photo
    with pytest.raises(TrainError, match="smaller than the requested 128"):
        CropSet(tmp_path / "ds", 128)
    windows = CropSet(tmp_path / "ds", 128, scale_max=2.0).batch(np.random.default_rng(0), 3)
    assert windows.shape == (3, 3, 128, 128)


def test_lr_drop_scales_every_group_and_a_resume_takes_the_new_schedule(dataset, tmp_path):
    def weights(run):
        return torch.load(run / "last.pt", weights_only=False)["model"]

    kw = dict(lpips_weight=0.0)
    # a drop at step 0 by half is the same run as half the learning rate (the gain tables' own rate included)
    train(config(dataset, tmp_path / "drop", "codec", steps=2, lr_drops=(0,), lr_drop_factor=0.5, **kw))
    train(config(dataset, tmp_path / "half", "codec", steps=2, lr=0.5e-4, **kw))
    train(config(dataset, tmp_path / "full", "codec", steps=2, **kw))
    drop, half, full = weights(tmp_path / "drop"), weights(tmp_path / "half"), weights(tmp_path / "full")
    assert all(torch.allclose(drop[k], half[k], atol=1e-7) for k in drop)
    assert any(not torch.allclose(drop[k], full[k], atol=1e-7) for k in drop)
    # a run resumed with a drop the first segment did not have follows it (the optimiser state's stored
    # rates do not win), and equals a run that had the schedule from the start
    train(config(dataset, tmp_path / "a", "codec", steps=3, lr_drops=(2,), **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=2, **kw))
    train(config(dataset, tmp_path / "b", "codec", steps=3, lr_drops=(2,), **kw), resume=True)
    train(config(dataset, tmp_path / "c", "codec", steps=3, **kw))
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    assert any(not torch.allclose(a[k], c[k], atol=1e-7) for k in a)
    with pytest.raises(TrainError, match="lr_drop_factor"):
        TrainConfig(stage="codec", dataset="d", run_dir="r", lr_drop_factor=0.0)
    with pytest.raises(TrainError, match="lr_drops"):
        TrainConfig(stage="codec", dataset="d", run_dir="r", lr_drops=(-1,))


def test_cli_rd_curve_measures_what_training_evaluates(dataset, tmp_path):
    import json

    from typer.testing import CliRunner

    from edge_sdk.cli import app

    photos = small_photos(tmp_path / "eval", seed=7)
    run = tmp_path / "run"
    train(config(dataset, run, "codec", steps=1, lpips_weight=0.0, eval_dir=str(photos), eval_every=1))
    export_weights(run, tmp_path / "w.safetensors", dtype=torch.float32)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "rd-curve", "--weights", str(tmp_path / "w.safetensors"), "--images",
                                 str(photos), "--model", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    curve = json.loads(result.output.strip().splitlines()[-1])
    logged = [r for r in csv.DictReader((run / "eval.csv").open()) if r["step"] == "1"]
    assert curve["photos"] == 2 and len(curve["qualities"]) == len(logged) == 4
    for ours, theirs in zip(curve["qualities"], logged):
        # export settles the z prior's quantiles (medians), which moves z's few bits a little
        assert ours["bpp"] == pytest.approx(float(theirs["bpp"]), rel=5e-3)
        assert ours["psnr"] == pytest.approx(float(theirs["psnr"]), abs=2e-3)
    missing = runner.invoke(app, ["train", "rd-curve", "--weights", str(tmp_path / "nope.safetensors"), "--images",
                                  str(photos), "--model", MODEL])
    assert missing.exit_code == 2 and "not a file" in missing.output
    unknown = runner.invoke(app, ["train", "rd-curve", "--weights", str(tmp_path / "w.safetensors"), "--images",
                                  str(photos), "--model", "no_such_model"])
    assert unknown.exit_code == 2 and "registered models" in unknown.output


def test_cli_card_names_each_runs_own_training_set(dataset, tmp_path):
    from typer.testing import CliRunner

    from edge_sdk.cli import app
    from edge_sdk.export.training.data import prepare_dataset, scan_folder

    small_photos(tmp_path / "src", seed=5, size=(200, 150))
    scaled = tmp_path / "scaled"
    prepare_dataset(scan_folder(tmp_path / "src", "CC0-1.0", split="train"), scaled, crop=64, short_side=96,
                    protected=[])
    codec_run, adapter_run = tmp_path / "codec_run", tmp_path / "adapter_run"
    train(config(dataset, codec_run, "codec", steps=1, lpips_weight=0.0))
    export_weights(codec_run, tmp_path / "c.safetensors")
    train(config(scaled, adapter_run, "adapter", steps=1, init=str(tmp_path / "c.safetensors"), threads=1))
    export_weights(adapter_run, tmp_path / "a.safetensors")
    card = tmp_path / "card.md"
    args = ["train", "card", "--weights", str(tmp_path / "a.safetensors"), "--run", str(codec_run), "--run",
            str(adapter_run), "--model", MODEL, "--out", str(card)]
    refused = CliRunner().invoke(app, args)  # the level report needs held-out photos
    assert refused.exit_code != 0 and "--no-level-report" in refused.output and not card.exists()
    result = CliRunner().invoke(app, args + ["--no-level-report"])
    assert result.exit_code == 0, result.output
    lines = [line for line in card.read_text().splitlines() if line.startswith("Data")]
    assert len(lines) == 2
    assert lines[0].startswith("Data of codec_run:") and "JPEGs reduced 2× or more" in lines[0]
    assert lines[1].startswith("Data of adapter_run:") and "reduced to a 96-px short side" in lines[1]
    rows = [line for line in card.read_text().splitlines() if "config.json of" in line]
    assert "cpu (2 threads)" in rows[0] and "cpu (1 threads)" in rows[1]  # each run's own thread count


def test_cli_card_shows_kodak_beside_pillow_and_published_curves_and_the_eval(dataset, tmp_path):
    import json

    from typer.testing import CliRunner

    from edge_sdk.cli import app

    photos = small_photos(tmp_path / "kodak", seed=3, size=(128, 96))
    run = tmp_path / "run"
    train(config(dataset, run, "codec", steps=1, lpips_weight=0.0))
    export_weights(run, tmp_path / "w.safetensors")

    def point(codec, setting, bpp, agreement):
        return {"codec": codec, "setting": setting, "bpp": bpp, "agreement": agreement, "accuracy": agreement - 0.1,
                "psnr": 20 + 10 * bpp, "lpips": None, "images": 3}

    summary = {"images": 3, "short_side": 224, "bd_rate_vs": {"webp": {"agreement": -0.12, "psnr": 0.4, "accuracy": None}},
               "teacher": {"ceiling": {"webp q=95": 0.9}, "median_confidence": 0.6},
               "curves": {"edge-sdk": [point("edge-sdk", f"depth {d}", 0.1 + d, 0.2 + d / 2) for d in (0, 0.5, 1)],
                          "edge-sdk pixels": [point("edge-sdk pixels", f"depth {d}", 0.1 + d, 0.3 + d / 2)
                                              for d in (0, 0.5, 1)],
                          "webp": [point("webp", "q=50", 0.5, 0.7)], "jpeg": [point("jpeg", "q=50", 0.6, 0.65)]}}
    (tmp_path / "results.json").write_text(json.dumps({**summary, "per_image": []}))
    card = tmp_path / "card" / "tiny.md"
    runner = CliRunner()
    args = ["train", "card", "--weights", str(tmp_path / "w.safetensors"), "--run", str(run), "--dataset", str(dataset),
            "--model", MODEL, "--no-level-report", "--kodak", str(photos), "--out", str(card)]
    result = runner.invoke(app, args + ["--eval", str(tmp_path / "results.json"), "--eval-title", "val photos"])
    assert result.exit_code == 0, result.output
    text = card.read_text()
    assert "## Kodak at full resolution" in text and "## val photos" in text
    assert "WebP (Pillow, this run)" in text and "bmshj2018-hyperprior" in text and "ELIC" in text
    assert "![Kodak rate-distortion](tiny_kodak.png)" in text and (card.parent / "tiny_kodak.png").stat().st_size > 1000
    assert "| webp | -12.0 % | +40.0 % | no common range |" in text
    assert "| edge-sdk pixels (teacher on our pictures) | depth 1 | 1.100 | 80.0% |" in text
    figures = json.loads(card.with_suffix(".json").read_text())
    assert [r["quality"] for r in figures["kodak"]["ours"]] == [1.0, 2.0, 3.0, 4.0]
    jpeg = figures["kodak"]["jpeg"]
    assert all(a["bpp"] < b["bpp"] and a["psnr"] < b["psnr"] for a, b in zip(jpeg, jpeg[1:]))
    assert figures["evaluation"]["images"] == 3 and "per_image" not in figures["evaluation"]
    (tmp_path / "bad.json").write_text("{}")
    bad = runner.invoke(app, args + ["--eval", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "results.json of `edge-sdk eval`" in bad.output
