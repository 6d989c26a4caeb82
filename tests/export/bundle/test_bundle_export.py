"""Export of a whole bundle: verified graphs, dynamic shapes, a manifest the runtime can use, atomic writes."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edge_sdk.export.bundle import onnx_export
from edge_sdk.export.models.base import EXPORT_PARTS, PartModule
from edge_sdk.export.models.checkpoint import CheckpointError, MissingWeightsError
from edge_sdk.export.bundle.exporter import export_model, prepare_model
from edge_sdk.runtime import LatentDecoder, StreamInfo, encode_latent, scale_to_index
from edge_sdk.runtime.bundle import GRAPH_NAMES, Bundle


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_records_everything_the_runtime_needs(lite0_export):
    out, manifest, model = lite0_export
    bundle = Bundle.load(out)
    assert bundle.model_name == "lite0" and bundle.quality == 2.0
    assert bundle.random_parts == ["adapter", "codec"]
    assert any("efficientnet-lite0" in s["source"] for s in manifest.weights.sources)
    assert len(bundle.class_names) == 1000 and "tiger cat" in bundle.class_names[282]
    assert bundle.latent_channels == model.latent_channels and bundle.padding_multiple == 64
    for name in GRAPH_NAMES:
        graph = manifest.graphs[name]
        assert 0 <= graph.max_abs_diff <= 1e-3
        assert graph.verified_sizes == ((64, 64), (128, 192))
    assert "RANDOM WEIGHTS" in (out / "README.md").read_text()
    assert bundle.manifest == manifest and bundle.manifest.codec_id == bundle.codec_id.hex()


@pytest.mark.parametrize("spec", [p for p in EXPORT_PARTS if p.input_stride], ids=lambda s: s.name)
def test_graphs_have_dynamic_height_and_width(lite0_export, spec):
    """A size that was neither traced nor verified at export still matches torch."""
    out, _, model = lite0_export  # (the head takes a pooled vector: no height or width)
    h, w = 320, 64
    stride = spec.input_stride
    channels = {"image": 3, "y": model.latent_channels, "z": model.hyper_channels}[spec.input_kind]
    x = torch.rand(1, channels, h // stride, w // stride) * (1 if spec.input_kind == "image" else 4)
    if spec.input_kind == "z":
        x = torch.round(x)
    got = session(out / f"{spec.name}.onnx").run(None, {spec.inputs[0]: x.numpy()})
    with torch.no_grad():
        ref = PartModule(model, spec, 2.0)(x)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for g, r in zip(got, ref):
        assert g.shape == tuple(r.shape)
        assert np.abs(g - r.numpy()).max() < 1e-3


def test_lite0_classifier_splits_at_its_pooling(lite0_export):
    """trunk → mean → head is the classifier: what lets the runtime classify large photos in tiles."""
    out, manifest, _ = lite0_export
    assert manifest.classifier_tiling is not None and manifest.classifier_tiling.scale_den == 2
    y_hat = np.random.default_rng(0).normal(0, 2, (1, manifest.model.latent_channels, 8, 12)).astype(np.float32)
    whole = session(out / "classifier.onnx").run(None, {"y_hat": y_hat})[0]
    features = session(out / "classifier_trunk.onnx").run(None, {"y_hat": y_hat})[0]
    assert features.shape[2:] == (4, 6)  # H/32: half the latent grid
    split = session(out / "classifier_head.onnx").run(None, {"pooled": features.mean(axis=(2, 3))})[0]
    assert np.abs(split - whole).max() < 1e-4


def test_bundle_drives_the_runtime_codec_end_to_end(lite0_export):
    out, _, _ = lite0_export
    bundle = Bundle.load(out)
    run = {name: session(bundle.graph_path(name)) for name in GRAPH_NAMES}
    image = onnx_export.sample_image(128, 192, seed=5).numpy()
    y = run["analysis"].run(None, {"image": image})[0]
    z = np.round(run["hyper_analysis"].run(None, {"y": y})[0])
    means, scales = run["hyper_synthesis"].run(None, {"z_hat": z.astype(np.float32)})
    kidx = scale_to_index(scales[0], bundle.tables.trit.scales)
    info = StreamInfo(codec_id=bundle.stream_codec_id, image_size=(128, 192), padding=(0, 0, 0, 0), quality=2)
    stream = encode_latent(y[0], means[0], kidx, z[0].astype(np.int64), bundle.tables, info=info)

    def prior(z_dec, _header):
        m, s = run["hyper_synthesis"].run(None, {"z_hat": z_dec[None].astype(np.float32)})
        return m[0], scale_to_index(s[0], bundle.tables.trit.scales)

    dec = LatentDecoder(bundle.tables, prior=prior, expected_codec_id=bundle.stream_codec_id)
    dec.feed(stream)
    assert dec.complete
    np.testing.assert_array_equal(dec.z, z[0])
    y_hat = dec.y_hat()
    np.testing.assert_allclose(y_hat, means[0] + np.round(y[0] - means[0]), atol=1e-4)
    logits = run["classifier"].run(None, {"y_hat": y_hat[None].astype(np.float32)})[0]
    image_hat = run["synthesis"].run(None, {"y_hat": y_hat[None].astype(np.float32)})[0]
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()
    assert image_hat.shape == image.shape and 0 <= image_hat.min() and image_hat.max() <= 1


def test_export_refuses_an_existing_folder_and_a_bad_quality(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(onnx_export.ExportError, match="already exists"):
        export_model("lite0", tmp_path / "b", random_weights=True)
    with pytest.raises(onnx_export.ExportError, match="quality"):
        export_model("lite0", tmp_path / "c", random_weights=True, quality=7)


def test_failed_verification_leaves_nothing_behind(tmp_path, monkeypatch, no_shipped_weights):
    model, weights, _ = prepare_model("lite0", random_weights=True)
    monkeypatch.setattr(onnx_export, "MAX_ABS_DIFF", 0.0)
    monkeypatch.setattr(onnx_export, "EXPORT_PARTS", EXPORT_PARTS[:1])
    with pytest.raises(onnx_export.ExportError, match="differs from torch"):
        onnx_export.export_bundle(model, tmp_path / "b", quality=1.0, weights=weights, sizes=((64, 64),))
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_an_existing_bundle_atomically(tmp_path, lite0_export, monkeypatch):
    import shutil

    from helpers import TINY_BUNDLE

    out = tmp_path / "b"
    shutil.copytree(TINY_BUNDLE, out)  # an existing bundle (of another model) is what --force may replace
    _, _, model = lite0_export
    weights = onnx_export.WeightsInfo(sources=[], random_parts=["codec"])
    onnx_export.export_bundle(model, out, quality=1.0, weights=weights, sizes=((64, 64),), force=True)
    loaded = Bundle.load(out)
    assert loaded.model_name == "lite0" and loaded.quality == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no .tmp or .old debris
    (out / "notes.txt").write_text("mine")  # a file the bundle does not account for: never deleted
    with pytest.raises(onnx_export.ExportError, match="notes.txt"):
        onnx_export.export_bundle(model, out, quality=1.0, weights=weights, sizes=((64, 64),), force=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_missing_weights_are_an_error_unless_random_is_allowed(no_shipped_weights):
    with pytest.raises(MissingWeightsError, match="--random-weights"):
        prepare_model("lite0")


def test_shipped_weights_are_found_without_arguments(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    donor = prepare_model("lite0", random_weights=True)[0]
    shipped = tmp_path / "lite0.safetensors"
    save_file({k: v.half().contiguous() for k, v in donor.state_dict().items()
               if not k.startswith("task_model.") and v.is_floating_point()}, str(shipped))
    monkeypatch.setattr("edge_sdk.export.models.lite0.shipped_weights_path", lambda: shipped)
    model, weights, _ = prepare_model("lite0")
    assert weights.random_parts == []
    assert any("shipped" in s["source"] for s in weights.sources)
    assert torch.equal(model.g_s[0].weight, donor.g_s[0].weight.half().float())


@pytest.mark.parametrize("fmt", ["safetensors", "pth_tar_dataparallel"])
def test_checkpoint_supplies_codec_and_adapter(tmp_path, fmt, no_shipped_weights):
    donor = prepare_model("lite0", random_weights=True)[0]
    state = {k: v for k, v in donor.state_dict().items() if not k.startswith("task_model.")}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "checkpoint.pth.tar"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model, weights, reports = prepare_model("lite0", checkpoint=path)
    assert weights.random_parts == []
    assert reports[0].unexpected == [] and all(k.startswith("task_model.") for k in reports[0].missing)
    assert torch.equal(model.g_a[0].weight, donor.g_a[0].weight)
    assert torch.equal(model.entropy_bottleneck.quantiles, donor.entropy_bottleneck.quantiles)


def test_bad_checkpoints_are_refused_clearly(tmp_path, no_shipped_weights):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        prepare_model("lite0", checkpoint=garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="holds no tensor"):
        prepare_model("lite0", checkpoint=foreign)
    wrong = tmp_path / "wrong.pth"
    torch.save({"g_a.0.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(CheckpointError, match="does not fit"):
        prepare_model("lite0", checkpoint=wrong)
    with pytest.raises(CheckpointError, match="does not exist"):
        prepare_model("lite0", checkpoint=tmp_path / "nope.pth")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["polc_convnext_t", "polc_deit_s"])
def test_every_registered_polc_model_exports_at_full_size(tmp_path, name):
    """The registered (official-size) POLC models, random weights, at the smallest legal sizes."""
    manifest = export_model(name, tmp_path / name, random_weights=True, sizes=((192, 192), (192, 256)))
    bundle = Bundle.load(tmp_path / name)
    assert bundle.model_name == name and bundle.latent_channels == 320 and bundle.min_size == 192
    assert set(bundle.random_parts) >= {"adapter", "codec"}
    assert max(g.max_abs_diff for g in manifest.graphs.values()) <= 1e-3


def test_the_shipped_lite0_weights_fill_every_group():
    from edge_sdk.export.models.lite0 import shipped_weights_path

    assert shipped_weights_path().is_file(), "export/weights/lite0.safetensors must ship with the package"
    assert shipped_weights_path().with_suffix(".md").is_file(), "and its model card"
    _, weights, _ = prepare_model("lite0")
    assert weights.random_parts == []


def _tiny_controller(**fitted):
    from edge_sdk.runtime import FEATURE_NAMES, Controller

    n = len(FEATURE_NAMES)
    return Controller(feature_names=FEATURE_NAMES, clip_low=np.full(n, -1e9), clip_high=np.full(n, 1e9),
                      mean=np.zeros(n), scale=np.ones(n), coef=np.linspace(-1, 1, n), intercept=0.25,
                      fitted_on=fitted, classifier_sha256="ff" * 32)


def test_export_stores_a_controller_keyed_to_its_classifier(lite0_export, tmp_path):
    from helpers import SMALL_SIZES

    _, _, model = lite0_export
    weights = onnx_export.WeightsInfo(sources=[], random_parts=["codec", "adapter"])
    manifest = onnx_export.export_bundle(model, tmp_path / "b", quality=2.0, weights=weights, sizes=SMALL_SIZES,
                                         controller=_tiny_controller())
    bundle = Bundle.load(tmp_path / "b")
    assert manifest.controller.file == "controller.json" and bundle.manifest == manifest
    assert bundle.controller.classifier_sha256 == bundle.graphs["classifier"].sha256
    assert bundle.controller.intercept == 0.25


def test_shipped_controller_only_for_its_weights_and_quality(tmp_path, monkeypatch):
    from edge_sdk.export.models import lite0
    from edge_sdk.runtime.fileio import sha256_file

    weights = tmp_path / "lite0.safetensors"
    weights.write_bytes(b"pretend weights")
    monkeypatch.setattr(lite0, "shipped_weights_path", lambda: weights)
    model = lite0.Lite0Model.__new__(lite0.Lite0Model)  # the method reads files only
    assert model.shipped_controller(2.0) is None  # no controller file
    _tiny_controller(weights_sha256=sha256_file(weights), quality=2.0).save(tmp_path / "lite0.controller.json")
    assert model.shipped_controller(2.0) is not None
    assert model.shipped_controller(3.0) is None  # another quality: another classifier
    weights.write_bytes(b"retrained weights")
    assert model.shipped_controller(2.0) is None  # fitted on other weights
