"""The bundle loader refuses damaged, foreign and inconsistent bundles (no torch needed)."""

import json
import shutil

import pytest

from edge_sdk.runtime.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    GRAPH_NAMES,
    MANIFEST_NAME,
    Bundle,
    codec_id,
    entropy_to_manifest,
)
from edge_sdk.runtime.errors import BundleError
from edge_sdk.runtime.fileio import sha256_file


def write_fake_bundle(root, tables, graphs=GRAPH_NAMES):
    """A structurally complete bundle whose graph files are placeholder bytes (the loader only hashes them)."""
    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i, name in enumerate(graphs):
        path = root / f"{name}.onnx"
        path.write_bytes(f"graph {name} {i}".encode() * 10)
        spec = [{"name": "x", "shape": [1, 3, "H", "W"], "dtype": "float32"}]
        entries[name] = {"file": path.name, "sha256": sha256_file(path), "inputs": spec, "outputs": spec,
                         "max_abs_diff": 1e-6}
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model": {"name": "fake", "quality": 2.0, "num_qualities": 4, "latent_channels": 8, "hyper_channels": 4,
                  "num_classes": 3},
        "weights": {"random_parts": ["codec"], "sources": []},
        "image": {"padding_multiple": 64, "min_size": 64},
        "graphs": entries,
        "entropy": entropy_to_manifest(tables),
        "classes": ["a", "b", "c"],
    }
    manifest["codec_id"] = codec_id("fake", 2.0, {n: e["sha256"] for n, e in entries.items()}, tables.digest).hex()
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def bundle_dir(tmp_path, tables):
    write_fake_bundle(tmp_path / "b", tables)
    return tmp_path / "b"


def edit_manifest(root, change):
    m = json.loads((root / MANIFEST_NAME).read_text())
    change(m)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


def test_loads_and_rebuilds_identical_tables(bundle_dir, tables):
    b = Bundle.load(bundle_dir)
    assert b.tables.digest == tables.digest
    assert (b.tables.z.cdf == tables.z.cdf).all() and (b.tables.trit.cdf == tables.trit.cdf).all()
    assert b.model_name == "fake" and b.quality == 2.0 and b.class_names == ["a", "b", "c"]
    assert b.random_parts == ["codec"] and b.random_weights
    assert set(b.graphs) == set(GRAPH_NAMES)


def test_channel_priorities_load_and_name_the_codec(tmp_path, tables):
    root = tmp_path / "weighted"
    manifest = write_fake_bundle(root, tables)
    priority = [64 * i - 256 for i in range(8)]
    manifest["entropy"] = entropy_to_manifest(tables, priority)
    shas = {n: e["sha256"] for n, e in manifest["graphs"].items()}
    manifest["codec_id"] = codec_id("fake", 2.0, shas, tables.digest, None, priority).hex()
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    bundle = Bundle.load(root)
    assert bundle.channel_priority.tolist() == priority
    assert bundle.codec_id != codec_id("fake", 2.0, shas, tables.digest)
    assert Bundle.load(write_fake_bundle(tmp_path / "plain", tables) and tmp_path / "plain").channel_priority is None


def test_codec_id_ignores_the_classifier_but_not_the_codec(tables):
    shas = {n: n * 4 for n in GRAPH_NAMES}
    base = codec_id("m", 1.0, shas, tables.digest)
    assert codec_id("m", 1.0, {**shas, "classifier": "other"}, tables.digest) == base
    assert codec_id("m", 1.0, {**shas, "hyper_synthesis": "other"}, tables.digest) != base
    assert codec_id("m", 2.0, shas, tables.digest) != base


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "synthesis.onnx").write_bytes(b"tampered"), "sha256"),
        (lambda r: (r / "classifier.onnx").unlink(), "missing"),
        (lambda r: (r / MANIFEST_NAME).unlink(), "no manifest.json"),
        (lambda r: (r / MANIFEST_NAME).write_bytes(b"\xff\xfe{not json"), "not valid JSON"),
        (lambda r: (r / MANIFEST_NAME).write_text('{"format": "onnx-zoo"}'), "not an edge-sdk bundle"),
        (lambda r: edit_manifest(r, lambda m: m.update(format_version=99)), "format version 99"),
        (lambda r: edit_manifest(r, lambda m: m["graphs"].pop("hyper_synthesis")), "hyper_synthesis"),
        (lambda r: edit_manifest(r, lambda m: m["graphs"]["analysis"].update(file="../x.onnx")), "directory"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"]["z"]["cdfs"][0].__setitem__(1, 5)), "entropy"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"]["trit"].update(tail_k=5.0)), "hash to"),
        (lambda r: edit_manifest(r, lambda m: m.update(codec_id="00" * 16)), "codec_id"),
        (lambda r: edit_manifest(r, lambda m: m["model"].update(quality=3.0)), "codec_id"),
        (lambda r: edit_manifest(r, lambda m: m.pop("classes")), "required field"),
        (lambda r: edit_manifest(r, lambda m: m.update(classes=[1, 2])), "classes"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"].update(channel_priority=[0] * 8)), "codec_id"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"].update(channel_priority=[0] * 7)), "one value per"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"].update(channel_priority=[9000] * 8)), "-8192..8192"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"].update(channel_priority=[0.5] * 8)), "integers"),
        (lambda r: edit_manifest(r, lambda m: m["entropy"].update(channel_priority="high")), "integers"),
    ],
)
def test_refuses_damaged_bundles(bundle_dir, damage, message):
    damage(bundle_dir)
    with pytest.raises(BundleError, match=message):
        Bundle.load(bundle_dir)


def test_refuses_a_file_or_a_missing_path(tmp_path, bundle_dir):
    with pytest.raises(BundleError, match="not a bundle directory"):
        Bundle.load(bundle_dir / "analysis.onnx")
    with pytest.raises(BundleError, match="not a bundle directory"):
        Bundle.load(tmp_path / "nowhere")


def test_hash_check_can_be_skipped_for_trusted_fast_loads(bundle_dir):
    shutil.copy(bundle_dir / "analysis.onnx", bundle_dir / "synthesis.onnx")
    with pytest.raises(BundleError):
        Bundle.load(bundle_dir)
    assert Bundle.load(bundle_dir, verify_hashes=False).model_name == "fake"


def test_only_bundles_and_empty_folders_may_be_replaced(tmp_path):
    import shutil

    from edge_sdk.runtime.bundle import replaceable_bundle_dir
    from helpers import TINY_BUNDLE

    assert replaceable_bundle_dir(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert replaceable_bundle_dir(tmp_path / "empty") is None
    bundle = tmp_path / "bundle"
    shutil.copytree(TINY_BUNDLE, bundle)
    assert replaceable_bundle_dir(bundle) is None
    (bundle / "my-notes.txt").write_text("not the exporter's")
    assert "my-notes.txt" in replaceable_bundle_dir(bundle)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me")
    assert "not an edge-sdk bundle" in replaceable_bundle_dir(notes)
    (tmp_path / "file").write_text("x")
    assert "not a folder" in replaceable_bundle_dir(tmp_path / "file")
