"""The one manifest schema: exact round trips, and a clear BundleError for each missing or wrong field."""

import copy
import json

import pytest

from edge_sdk.runtime.bundle import read_manifest, write_manifest
from edge_sdk.runtime.errors import BundleError
from edge_sdk.runtime.manifest import GRAPH_NAMES, Manifest

from test_bundle import write_fake_bundle


@pytest.fixture
def doc(tmp_path, tables):
    """A manifest laid out field for field as the exporter writes it (optional sections included)."""
    d = write_fake_bundle(tmp_path / "b", tables)
    d["model"] = {"name": "fake", "description": "test model", "quality": 2.0, "num_qualities": 4,
                  "latent_channels": 8, "hyper_channels": 4, "num_classes": 3}
    d["image"] = {"layout": "NCHW", "color": "RGB", "dtype": "float32", "range": [0.0, 1.0], "padding_multiple": 64,
                  "min_size": 64, "backbone_normalization": {"convention": "tflite"}}
    ordered = {k: d[k] for k in ("format", "format_version", "model", "weights", "image")}
    ordered["quantization"] = {"y": "residual = round(y - means)", "scale_bound": 0.11}
    ordered["graphs"] = {n: {"file": g["file"], "sha256": g["sha256"], "bytes": 120, "inputs": g["inputs"],
                             "outputs": g["outputs"], "max_abs_diff": g["max_abs_diff"],
                             "verified_sizes": [[64, 64], [128, 192]]} for n, g in d["graphs"].items()}
    ordered["entropy"] = d["entropy"]
    ordered["integer_prior"] = {"file": "integer_prior.npz", "sha256": "ab" * 32, "activation_bits": 10,
                                "index_agreement": {"exact": 0.9, "within_one": 1.0, "elements": 10}}
    ordered["classes"] = d["classes"]
    ordered["created"] = "2025-01-01T00:00:00+00:00"
    ordered["exporter"] = {"edge_sdk": "0.1.0", "torch": "2.9", "opset": "20"}
    ordered["codec_id"] = d["codec_id"]
    ordered["controller"] = {"file": "controller.json", "sha256": "cd" * 32}
    return ordered


def test_round_trip_keeps_the_json_byte_for_byte(doc):
    m = Manifest.from_dict(doc)
    assert m.to_dict() == doc
    assert json.dumps(m.to_dict(), indent=1) == json.dumps(doc, indent=1)  # field order too
    assert m.model.quality == 2.0 and m.image.padding_multiple == 64 and m.random_weights
    assert list(m.graphs) == list(GRAPH_NAMES) and m.graphs["analysis"].inputs[0].shape == (1, 3, "H", "W")
    assert m.integer_prior.details["activation_bits"] == 10 and m.controller.file == "controller.json"
    assert Manifest.from_dict(m.to_dict()) == m


def test_minimal_manifest_loads_and_writes_back(tmp_path, tables):
    d = write_fake_bundle(tmp_path / "b", tables)
    m = read_manifest(tmp_path / "b")
    assert m.model.name == "fake" and m.quantization is None and m.integer_prior is None
    write_manifest(tmp_path / "b", m)
    assert Manifest.from_dict(json.loads((tmp_path / "b" / "manifest.json").read_text())) == m
    assert m.to_dict()["graphs"]["analysis"] == {**d["graphs"]["analysis"]}


def _drop(path):
    def change(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        del d[last]
    return change


def _set(path, value):
    def change(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        d[last] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_drop(["model"]), "lacks the required field 'model'"),
    (_drop(["model", "latent_channels"]), "model lacks the required field 'latent_channels'"),
    (_set(["model", "quality"], "high"), "'quality' must be a number"),
    (_set(["model", "hyper_channels"], 4.5), "'hyper_channels' must be an integer"),
    (_drop(["image", "padding_multiple"]), "image lacks the required field 'padding_multiple'"),
    (_set(["image", "min_size"], 0), "'min_size' must lie in 1..4096"),
    (_set(["image", "min_size"], 10 ** 9), "'min_size' must lie in 1..4096"),
    (_set(["image", "padding_multiple"], 0), "'padding_multiple' must lie in 64"),
    (_set(["image", "padding_multiple"], 96), "'padding_multiple' must be a multiple of 64"),
    (_set(["model", "quality"], 99), "'quality' must lie in 0..4"),
    (_set(["model", "quality"], float("nan")), "'quality' must be finite"),
    (_set(["model", "latent_channels"], -4), "'latent_channels' must lie in 1.."),
    (_drop(["model", "num_classes"]), "model lacks the required field 'num_classes'"),
    (_set(["classes"], ["a"]), "classes lists 1 names but model field 'num_classes' is 3"),
    (_set(["graphs", "classifier", "outputs"], [{"name": "logits", "shape": [1, 1000]}]),
     "classifier output logits has 1000 classes"),
    (_set(["weights", "random_parts"], "codec"), "random_parts"),
    (_drop(["graphs", "synthesis"]), "graph\\(s\\) synthesis"),
    (_drop(["graphs", "classifier", "sha256"]), "graph classifier lacks the required field 'sha256'"),
    (_set(["graphs", "analysis", "inputs"], [{"shape": [1]}]), "graph analysis input"),
    (_set(["graphs", "analysis", "file"], "../analysis.onnx"), "must not contain a directory"),
    (_drop(["entropy"]), "'entropy'"),
    (_drop(["classes"]), "required field 'classes'"),
    (_set(["codec_id"], "xyz"), "codec_id"),
    (_set(["controller"], {"file": "controller.json"}), "controller entry is damaged"),
    (_set(["format"], "onnx-zoo"), "not an edge-sdk bundle manifest"),
    (_set(["format_version"], 2), "format version 2"),
])
def test_missing_or_wrong_fields_are_named(doc, change, message):
    broken = copy.deepcopy(doc)
    change(broken)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(broken)


def test_read_manifest_names_the_file(tmp_path, tables):
    write_fake_bundle(tmp_path / "b", tables)
    path = tmp_path / "b" / "manifest.json"
    d = json.loads(path.read_text())
    del d["weights"]
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match=r"manifest\.json: manifest lacks the required field 'weights'"):
        read_manifest(tmp_path / "b")


@pytest.fixture
def tiled_doc():
    """The committed tiny bundle's manifest: it carries the classifier trunk and head."""
    from pathlib import Path

    return json.loads((Path(__file__).parents[1] / "data" / "tiny_bundle" / "manifest.json").read_text())


def test_classifier_tiling_round_trips(tiled_doc):
    m = Manifest.from_dict(tiled_doc)
    assert m.classifier_tiling.margin == 2 and {"classifier_trunk", "classifier_head"} <= set(m.graphs)
    assert m.to_dict() == tiled_doc


@pytest.mark.parametrize("change, message", [
    (_drop(["graphs", "classifier_head"]), "needs the graphs classifier_trunk, classifier_head"),
    (_drop(["classifier_tiling"]), "and the field 'classifier_tiling' together"),
    (_set(["classifier_tiling", "scale_den"], 0), "'scale_den' must lie in 1..64"),
    (_set(["classifier_tiling", "scale_den"], 4), "'margin' \\(2\\) must be a multiple of 'scale_den'"),
    (_set(["classifier_tiling", "margin"], "wide"), "'margin' must be a number"),
    (_set(["graphs", "classifier_head", "outputs"], [{"name": "logits", "shape": [1, 7]}]),
     "classifier output logits has 7 classes"),
])
def test_classifier_tiling_fields_are_checked(tiled_doc, change, message):
    broken = copy.deepcopy(tiled_doc)
    change(broken)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(broken)


def test_classifier_tiling_without_its_graphs_is_refused(doc):
    broken = copy.deepcopy(doc)
    broken["classifier_tiling"] = {"scale_num": 1, "scale_den": 2, "margin": 16}
    with pytest.raises(BundleError, match="'classifier_tiling' needs the graphs"):
        Manifest.from_dict(broken)
