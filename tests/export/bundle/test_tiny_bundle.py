"""The committed test bundle (tests/data/tiny_bundle) is what exporting ``tiny_test`` gives today.

Export is deterministic (fixed-seed weights, byte-identical ONNX and integer prior for the same
torch/onnx versions), so a fresh export must reproduce every graph hash, the entropy tables, the
integer prior and the codec id. When this fails the model, the exporter or the bundle format
changed: regenerate the bundle with the command in tests/data/README.md and commit it.
"""

from pathlib import Path

import pytest

from edge_sdk.runtime.bundle import Bundle, read_manifest
from helpers import TINY_BUNDLE, TINY_MODEL

#: what legitimately differs between two exports of the same model
VOLATILE = ("created", "exporter", "memory")  # memory: measured on the exporting machine


def _stable(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in VOLATILE}
    # ONNX Runtime's float rounding (hence the measured torch difference) may vary by CPU
    doc["graphs"] = {n: {k: v for k, v in g.items() if k != "max_abs_diff"} for n, g in doc["graphs"].items()}
    return doc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    from edge_sdk.export.bundle.exporter import export_model

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    export_model(TINY_MODEL, out, random_weights=True)
    return out


def test_committed_tiny_bundle_matches_a_fresh_export(fresh):
    committed, now = read_manifest(TINY_BUNDLE), read_manifest(fresh)
    hint = (f"tests/data/tiny_bundle is stale (committed with {committed.exporter}, exported now with "
            f"{now.exporter}): regenerate it, see tests/data/README.md")
    assert {n: g.sha256 for n, g in now.graphs.items()} == {n: g.sha256 for n, g in committed.graphs.items()}, hint
    assert _stable(now.to_dict()) == _stable(committed.to_dict()), hint
    assert now.codec_id == committed.codec_id, hint


def test_committed_tiny_bundle_is_a_small_complete_test_bundle():
    bundle = Bundle.load(TINY_BUNDLE)  # checks every file's sha256 against the manifest
    assert bundle.model_name == TINY_MODEL and bundle.integer_prior is not None
    assert bundle.manifest.weights.random_parts == ("adapter", "backbone", "codec")
    assert len(bundle.class_names) >= 5  # top-5 answers need five classes
    assert sum(p.stat().st_size for p in TINY_BUNDLE.iterdir()) < 500_000


def test_exported_graphs_name_no_path_of_the_exporting_machine(fresh):
    # the dynamo exporter's stack traces would put this checkout's absolute paths into every graph,
    # so the same model would hash differently on every machine (and tell users where it was built)
    root = str(Path(__file__).resolve().parents[3]).encode()
    for bundle in (fresh, TINY_BUNDLE):
        for graph in sorted(bundle.glob("*.onnx")):
            data = graph.read_bytes()
            assert root not in data and b'File "/' not in data, graph
