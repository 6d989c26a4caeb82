"""The adaptive decoding controller: features, fitting, calibration measures, Algorithm 2."""

import dataclasses
import shutil

import numpy as np
import pytest

from edge_sdk.calibration.controller.collect import LevelSamples, collect_levels
from edge_sdk.calibration.controller.fit import cross_validated_probabilities, fit_controller, make_estimator
from edge_sdk.calibration.bdrate import bd_rate
from edge_sdk.calibration.controller.metrics import decide, expected_calibration_error, fixed_depth_curve, oracle_point
from edge_sdk.calibration.controller.report import build_report, write_plots
from edge_sdk.runtime.pipeline import Decoder, Encoder
from edge_sdk.runtime import BundleError, Controller, ControllerError, FEATURE_NAMES, level_boundaries, logit_features
from edge_sdk.runtime.bundle import Bundle, attach_controller
from edge_sdk.runtime.controller import checkpoint_levels
from edge_sdk.runtime.backends import open_backend


def reference_features(z):
    """Table S1 written the plain way (float64, no shifts) for moderate logits."""
    p = np.exp(z) / np.exp(z).sum()
    ps, zs = np.sort(p)[::-1], np.sort(z)[::-1]
    return np.array([ps[0], p.std(), -(p * np.log(p)).sum(), ps[0] / ps[1], ps[:10].sum(), z.mean(), zs[0], z.std(),
                     zs[0] - zs[1], -np.log(ps[0]), -np.log(ps[1]) + np.log(ps[0]), -np.log(np.exp(z).sum())])


def test_features_match_table_s1():
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = rng.normal(0, 3, 1000)
        np.testing.assert_allclose(logit_features(z), reference_features(z), rtol=1e-9, atol=1e-12)
    batch = rng.normal(0, 3, (4, 1000))
    np.testing.assert_allclose(logit_features(batch), np.stack([reference_features(z) for z in batch]), rtol=1e-9)
    assert len(FEATURE_NAMES) == 12


def test_features_survive_extreme_logits():
    z = np.zeros(1000)
    z[3] = 5000.0  # exp would overflow without the shifts
    f = logit_features(z)
    assert np.all(np.isfinite(f)) and f[0] == pytest.approx(1.0) and f[8] == 5000.0
    with pytest.raises(ValueError, match="NaN"):
        logit_features(np.array([np.nan] * 12))
    with pytest.raises(ValueError, match="10 classes"):
        logit_features(np.zeros(5))


def synthetic_samples(n, seed, a=1.5, b=-3.0, classes=50):
    """Logits whose top-1 is right with a known probability sigmoid(a·margin + b)."""
    rng = np.random.default_rng(seed)
    margin = rng.uniform(0, 5, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[:, 0] = logits[:, 1:].max(axis=1) + margin
    truth = 1 / (1 + np.exp(-(a * margin + b)))
    correct = rng.random(n) < truth
    k = 4  # "levels" per stream, so the grouped helpers have streams to work on
    samples = LevelSamples(
        names=[f"img{i}" for i in range(n // k)], group=np.arange(n) // k, level=np.arange(n) % k,
        num_levels=np.full(n, k), bytes_used=100 * (np.arange(n) % k + 1), bytes_total=np.full(n, 100 * k),
        pixels=np.full(n, 64 * 64), features=logit_features(logits), top1=np.zeros(n, int),
        reference=np.where(correct, 0, 1), correct=correct)
    return samples, logits, truth


def test_fit_recovers_a_known_calibration():
    train, _, _ = synthetic_samples(8000, seed=1)
    controller = fit_controller(train)
    test, logits, truth = synthetic_samples(8000, seed=2)
    p = controller.probability(logits)
    assert np.mean(np.abs(p - truth)) < 0.03
    ece, table = expected_calibration_error(p, test.correct)
    assert ece < 0.03 and sum(r["count"] for r in table) == 8000
    # a controller that ignores the features is badly calibrated on the same data
    flat = np.full_like(p, test.correct.mean() + 0.3)
    assert expected_calibration_error(flat, test.correct)[0] > 0.25


def test_runtime_equals_sklearn_predict_proba():
    train, _, _ = synthetic_samples(3000, seed=3)
    controller = fit_controller(train, c=0.5)
    est = make_estimator(0.5).fit(train.features, train.correct.astype(int))
    test, logits, _ = synthetic_samples(500, seed=4)
    inside = np.all((test.features >= controller.clip_low) & (test.features <= controller.clip_high), axis=1)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(controller.probability(logits)[inside],
                               est.predict_proba(test.features[inside])[:, 1], rtol=1e-6, atol=1e-9)


def test_controller_file_round_trip_and_damage(tmp_path):
    train, logits, _ = synthetic_samples(2000, seed=5)
    controller = fit_controller(train, classifier_sha256="ab" * 32, default_threshold=0.7)
    path = tmp_path / "controller.json"
    controller.save(path)
    again = Controller.load(path)
    np.testing.assert_array_equal(again.probability(logits), controller.probability(logits))
    assert again.default_threshold == 0.7
    path.write_text(path.read_text().replace('"edge-sdk-controller"', '"other"'))
    with pytest.raises(ControllerError, match="not an edge-sdk controller"):
        Controller.load(path)
    path.write_text("{not json")
    with pytest.raises(ControllerError, match="cannot read"):
        Controller.load(path)
    data = controller.to_dict()
    data["coef"] = data["coef"][:5]
    with pytest.raises(ControllerError, match="coef"):
        Controller.from_dict(data)


def step_samples(n, seed):
    """P(correct) jumps from 0.15 to 0.55 at a logit margin of 3.5: a shape no logistic
    regression on these features expresses, so only a recalibration can match it."""
    samples, logits, _ = synthetic_samples(n, seed)
    truth = np.where(samples.features[:, FEATURE_NAMES.index("logit_delta12")] < 3.5, 0.15, 0.55)
    correct = np.random.default_rng(seed + 100).random(n) < truth
    return dataclasses.replace(samples, correct=correct, reference=np.where(correct, 0, 1)), logits, truth


def test_isotonic_recalibration_fixes_what_the_regression_cannot_express():
    train, _, _ = step_samples(6000, seed=1)
    test, logits, truth = step_samples(6000, seed=2)
    plain = fit_controller(train).probability(logits)
    recal = fit_controller(train, recalibration="isotonic").probability(logits)
    ece_plain, ece_recal = (expected_calibration_error(p, test.correct)[0] for p in (plain, recal))
    assert ece_recal < 0.02 < 0.035 < ece_plain
    assert np.mean(np.abs(recal - truth)) < 0.6 * np.mean(np.abs(plain - truth))


def test_isotonic_runtime_equals_sklearn():
    from sklearn.isotonic import IsotonicRegression

    train, _, _ = step_samples(3000, seed=3)
    controller = fit_controller(train, recalibration="isotonic")
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
        cross_validated_probabilities(train), train.correct.astype(float))
    test, logits, _ = step_samples(500, seed=4)
    plain = dataclasses.replace(controller, recalibration=None).probability(logits)
    np.testing.assert_allclose(controller.probability(logits), iso.predict(plain), atol=1e-12)
    # cross-validation refits the recalibration inside each fold: never the probabilities it scores
    inner = cross_validated_probabilities(train, recalibration="isotonic")
    assert inner.shape == train.correct.shape and not np.allclose(inner, controller.probability_from_features(train.features))


def test_recalibrated_controller_file_versions(tmp_path):
    train, logits, _ = step_samples(2000, seed=5)
    plain, recal = fit_controller(train), fit_controller(train, recalibration="isotonic")
    assert plain.to_dict()["version"] == 1 and "recalibration" not in plain.to_dict()  # older readers keep working
    assert recal.to_dict()["version"] == 2
    recal.save(tmp_path / "c.json")
    np.testing.assert_array_equal(Controller.load(tmp_path / "c.json").probability(logits), recal.probability(logits))
    for damage in ({"y": [0.5, 0.2]}, {"x": [0.3, 0.1]}, {"y": [0.1, 1.5]}, {"x": [0.1]}):
        data = recal.to_dict()
        data["recalibration"] = {"x": [0.1, 0.9], "y": [0.2, 0.4], **damage}
        with pytest.raises(ControllerError, match="recalibration"):
            Controller.from_dict(data)
    data = recal.to_dict()
    data["version"] = 1
    with pytest.raises(ControllerError, match="version 1"):
        Controller.from_dict(data)
    with pytest.raises(ValueError, match="recalibration"):
        fit_controller(train, recalibration="platt")


def test_chosen_c_comes_from_the_grid_and_is_recorded():
    from edge_sdk.calibration.controller.fit import C_GRID, select_c

    train, _, _ = synthetic_samples(2000, seed=7)
    chosen = select_c(train)
    assert chosen in C_GRID
    controller = fit_controller(train, c=None)
    assert controller.fitted_on["C"] == chosen and controller.fitted_on["C_chosen_by"].startswith("grouped")
    assert fit_controller(train, c=0.5).fitted_on["C_chosen_by"] == "given"


def test_photo_interval_is_a_point_when_every_photo_looks_the_same():
    from edge_sdk.calibration.controller.metrics import ece_photo_interval

    p = np.tile([0.1, 0.4, 0.8, 0.9], 10)
    correct = np.tile([False, True, True, False], 10)
    groups = np.repeat(np.arange(10), 4)
    ece, _ = expected_calibration_error(p, correct)
    assert ece_photo_interval(p, correct, groups) == pytest.approx((ece, ece))
    rng = np.random.default_rng(0)
    noisy = rng.random(40) < 0.5
    low, high = ece_photo_interval(p, noisy, groups)
    assert 0 <= low < high


def test_fit_needs_both_outcomes():
    samples, _, _ = synthetic_samples(400, seed=6)
    samples.correct[:] = True
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_controller(samples)


def test_decisions_stop_at_the_first_confident_level():
    samples, _, _ = synthetic_samples(12, seed=7)  # 3 streams of 4 levels
    samples.correct[:] = [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1]
    p = np.array([0.1, 0.6, 0.9, 0.95, 0.2, 0.3, 0.4, 0.45, 0.7, 0.8, 0.1, 0.9])
    d = decide(samples, p, 0.55)
    assert d.level.tolist() == [1, 3, 0] and d.stopped_early.tolist() == [True, False, True]
    assert d.correct.tolist() == [True, False, True]
    assert d.bytes_used.tolist() == [200, 400, 100]
    assert d.bytes_saved == pytest.approx(1 - 700 / 1200)
    full = decide(samples, p, 2.0)
    assert full.level.tolist() == [3, 3, 3] and full.bytes_saved == 0
    # the oracle stops where the prediction turns right for good: levels 1, (wrong) 3, 3
    oracle = oracle_point(samples)
    assert oracle["accuracy"] == pytest.approx(2 / 3)
    assert oracle["bpp"] == pytest.approx(np.mean([200, 400, 400]) * 8 / 4096)
    curve = fixed_depth_curve(samples, [0.0, 1.0])
    assert [r["accuracy"] for r in curve] == pytest.approx([1 / 3, 2 / 3])


def test_checkpoint_levels_spread_over_the_bytes():
    ends = [100, 110, 120, 200, 300, 400, 500, 600, 700, 800]
    assert checkpoint_levels(ends, 4) == [3, 5, 7, 9]  # first levels holding 200, 400, 600, 800 bytes
    assert checkpoint_levels(ends, 0) == list(range(10)) and checkpoint_levels(ends, 50) == list(range(10))
    assert checkpoint_levels(ends, 1) == [9] and checkpoint_levels([], 4) == []
    assert checkpoint_levels([500, 900, 1000], 8) == [0, 1, 2]  # level 0 alone may hold the first eighths
    samples, _, _ = synthetic_samples(12, seed=7)
    p = np.array([0.1, 0.6, 0.9, 0.95, 0.2, 0.3, 0.4, 0.45, 0.7, 0.8, 0.1, 0.9])
    d = decide(samples, p, 0.55, checkpoints=2)  # consulted at levels 1 and 3 only (200 and 400 of 400 bytes)
    assert d.level.tolist() == [1, 3, 1]


def test_bd_rate_hand_computed():
    acc = np.array([0.5, 0.6, 0.7, 0.8])
    rate = np.array([0.1, 0.2, 0.3, 0.4])
    # the test curve needs exactly 20% more rate everywhere: BD-rate is +20%
    assert bd_rate(rate, acc, rate * 1.2, acc) == pytest.approx(0.2, abs=1e-9)
    assert bd_rate(rate, acc, rate * 0.5, acc) == pytest.approx(-0.5, abs=1e-9)
    # log-rate linear in accuracy on both: log r = 2a − 3 against log r = 2a − 3 + log 1.1 on [0.6, 0.8]
    a2 = np.array([0.6, 0.7, 0.8])
    ref = np.exp(2 * acc - 3)
    test = np.exp(2 * a2 - 3) * 1.1
    assert bd_rate(ref, acc, test, a2) == pytest.approx(0.1, abs=1e-9)
    assert bd_rate(rate, acc, rate, acc + 1.0) is None  # no shared accuracy range


def test_report_and_plots(tmp_path):
    samples, logits, _ = synthetic_samples(2000, seed=8)
    probs = cross_validated_probabilities(samples, folds=4)
    assert probs.shape == (2000,) and np.all((probs >= 0) & (probs <= 1))
    report = build_report(samples, probs, (0.5, 0.8))
    assert [t["tau"] for t in report["taus"]] == [0.5, 0.8]
    assert report["taus"][1]["bpp"] >= report["taus"][0]["bpp"]  # a stricter τ never spends fewer bytes
    assert report["full_depth"]["bpp"] >= report["taus"][1]["bpp"]
    paths = write_plots(report, tmp_path)
    assert [p.name for p in paths] == ["reliability.png", "levels.png", "tau.png", "rate_accuracy.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


# --- on a real (random-weight) bundle -------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle_copy(tiny_bundle, tmp_path_factory):
    out = tiny_bundle
    dest = tmp_path_factory.mktemp("cal") / "bundle"
    shutil.copytree(out, dest)
    return dest


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    return [("coffee", data.coffee()[:128, :192]), ("chelsea", data.chelsea()[:128, :160]),
            ("astronaut", data.astronaut()[::4, ::4])]


def test_collect_labels_every_level(bundle_copy, photos):
    backend = open_backend("ort:cpu", threads=2)
    samples = collect_levels(bundle_copy, photos[:2], backend=backend)
    enc = Encoder(bundle_copy, backend)
    for g, (name, image) in enumerate(photos[:2]):
        ends = level_boundaries(enc.encode(image))
        rows = samples.group == g
        assert samples.level[rows].tolist() == list(range(len(ends)))
        assert samples.bytes_used[rows].tolist() == ends
        assert np.all(samples.correct[rows] == (samples.top1[rows] == samples.reference[rows]))
    labelled = collect_levels(bundle_copy, photos[:1], labels={"coffee": 7}, backend=backend)
    assert set(labelled.reference) == {7}


def test_decoder_stops_where_the_controller_says(bundle_copy, photos):
    backend = open_backend("ort:cpu", threads=2)
    bundle = Bundle.load(bundle_copy)
    samples = collect_levels(bundle, photos, backend=backend)
    samples.correct = samples.level >= samples.num_levels // 2  # any mix of outcomes fits
    controller = dataclasses.replace(fit_controller(samples), classifier_sha256=bundle.graphs["classifier"].sha256)
    decoder = Decoder(dataclasses.replace(bundle, controller=controller), backend)
    data = Encoder(bundle, backend).encode(photos[0][1])
    ends = level_boundaries(data)
    p = np.array([controller.probability(decoder._session_at(data, k).logits()) for k in range(len(ends))])
    for checks in (0, 3, 8):
        candidates = checkpoint_levels(ends, checks)
        for tau in (float(np.median(p[candidates])), float(p[candidates].max()), float(p.max()) + 1e-9, 0.0):
            pred = decoder.classify(data, threshold=tau, checkpoints=checks)
            hits = [k for k in candidates if p[k] >= tau]
            want = hits[0] if hits else len(ends) - 1
            assert ends[pred.level] == ends[want] and pred.bytes_used == ends[want]
            assert pred.threshold == tau and pred.confidence == pytest.approx(p[pred.level])
    # a prefix: the decoder cannot go past what it holds
    prefix = data[: ends[len(ends) // 2]]
    pred = decoder.classify(prefix, threshold=1.0)
    assert ends[pred.level] <= len(prefix)
    # without a controller an explicit threshold is an error, not a silent full decode
    with pytest.raises(ValueError, match="calibrate"):
        Decoder(bundle, backend).classify(data, threshold=0.5)


def test_bundle_stores_and_checks_its_controller(bundle_copy, photos):
    bundle = Bundle.load(bundle_copy)
    samples, _, _ = synthetic_samples(400, seed=9)
    controller = dataclasses.replace(fit_controller(samples), classifier_sha256=bundle.graphs["classifier"].sha256)
    attach_controller(bundle_copy, controller)
    loaded = Bundle.load(bundle_copy)
    assert loaded.controller is not None and loaded.controller.coef.tolist() == controller.coef.tolist()
    (bundle_copy / "controller.json").write_text((bundle_copy / "controller.json").read_text().replace("0", "1", 1))
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(bundle_copy)
    attach_controller(bundle_copy, dataclasses.replace(controller, classifier_sha256="00" * 32))
    with pytest.raises(BundleError, match="another classifier"):
        Bundle.load(bundle_copy)
    attach_controller(bundle_copy, controller)
    assert Bundle.load(bundle_copy).controller is not None
