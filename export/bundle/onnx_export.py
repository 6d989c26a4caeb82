"""Turn a model into a bundle: six ONNX graphs, verified against torch, plus manifest and README.

Every graph is exported with the dynamo exporter (the TorchScript one is deprecated) with
dynamic height and width, then run in ONNX Runtime at two image sizes — the traced one and
a different, non-square one, which proves the dynamic dims really are dynamic — and
compared with torch on realistic inputs (each graph is fed what the previous one produced).
The bundle directory appears atomically (``runtime.fileio.atomic_directory``); its
``manifest.json`` is a ``runtime.manifest.Manifest``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from edge_sdk.runtime.bundle import (
    GRAPH_NAMES,
    INTEGER_PRIOR_FILE,
    MAX_ABS_DIFF,
    attach_controller,
    codec_id,
    entropy_to_manifest,
    read_manifest,
    replaceable_bundle_dir,
    write_manifest,
)
from edge_sdk.runtime.fileio import atomic_directory, sha256_file
from edge_sdk.runtime.manifest import (
    TRUNK_GRAPH_NAMES,
    ClassifierTilingSection,
    GraphEntry,
    ImageSection,
    Manifest,
    ModelSection,
    SidecarEntry,
    TensorSpec,
    WeightsSection,
)
from edge_sdk.runtime.tables import EntropyTables, build_trit_tables, build_z_tables, scale_to_index

from ..models.base import EXPORT_PARTS, SCALE_BOUND, CompressedDomainModel, PartModule, PartSpec
from .priority import channel_priority

OPSET = 20
ProgressFn = Callable[[str], None]
#: progress messages export_bundle emits: one per graph, entropy tables, integer prior, channel priorities, writing
EXPORT_STEPS = len(EXPORT_PARTS) + 4


class ExportError(RuntimeError):
    """Export could not produce a bundle that matches the torch model."""


@dataclass
class WeightsInfo:
    """Where the weights came from, for the manifest and the bundle README."""

    sources: list[dict]
    random_parts: list[str]


def sample_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic photo-like test image: smooth colour fields plus edges and fine noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 32), max(2, width // 32), generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    img = img + 0.25 * ((xx * 7 + yy * 3) % 1.0 > 0.5).float() + 0.05 * torch.randn(1, 3, height, width, generator=gen)
    return img.clamp(0, 1)


def _tensor_shapes(model: CompressedDomainModel) -> dict[str, list]:
    return {
        "image": [1, 3, "H", "W"],
        "y": [1, model.latent_channels, "H/16", "W/16"],
        "z": [1, model.hyper_channels, "H/64", "W/64"],
        "logits": [1, model.num_classes],
        **_trunk_shapes(model),
    }


def _trunk_shapes(model: CompressedDomainModel) -> dict[str, list]:
    tiling = model.classifier_tiling
    if tiling is None:
        return {}
    stride, rest = divmod(16 * tiling.scale_den, tiling.scale_num)
    if rest:
        raise ExportError(f"{model.model_name}: a trunk at {tiling.scale_num}/{tiling.scale_den} of the latent grid "
                          "is not an integer stride of the image")
    return {"features": [1, model.trunk_channels, f"H/{stride}", f"W/{stride}"],
            "pooled": [1, model.trunk_channels]}


_OUTPUT_KIND = {"y": "y", "z": "z", "means": "y", "scales": "y", "logits": "logits", "image": "image",
                "features": "features"}


@torch.no_grad()
def _reference_inputs(model: CompressedDomainModel, quality: float, height: int, width: int, seed: int) -> dict:
    """The input each graph sees in real use, computed with torch from one sample image."""
    image = sample_image(height, width, seed)
    y = model.analysis(image, quality)
    z_hat = torch.round(model.hyper_analysis(y, quality))
    means, _ = model.hyper_synthesis(z_hat, quality)
    y_hat = torch.round(y - means) + means
    refs = {"image": image, "y": y, "z": z_hat, "y_hat": y_hat}
    if model.classifier_tiling is not None:
        refs["pooled"] = model.classifier_trunk(y_hat, quality).mean(dim=(2, 3))
    return refs


#: graphs whose input is y's grid but whose real input is the quantised ŷ
_Y_HAT_PARTS = ("classifier", "synthesis", "classifier_trunk")


def _part_input(spec: PartSpec, refs: dict) -> torch.Tensor:
    return refs["y_hat"] if spec.name in _Y_HAT_PARTS else refs[spec.input_kind]


def _export_graph(module: PartModule, example: torch.Tensor, path: Path) -> None:
    from torch.export import Dim

    spec = module.spec
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter is chatty about decompositions it handles fine
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            opset_version=OPSET,
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            # spatial inputs take any padded size; the head's pooled vector has none
            dynamic_shapes=({2: Dim.DYNAMIC, 3: Dim.DYNAMIC},) if example.ndim == 4 else None,
            verbose=False,
        )
    _strip_source_locations(path)


#: node metadata the dynamo exporter fills with Python stack traces ("File "/home/…/x.py", line …")
_SOURCE_LOCATION_KEYS = ("pkg.torch.onnx.stack_trace",)


def _strip_source_locations(path: Path) -> None:
    """Drop the exporter's per-node stack traces from the saved graph.

    They name absolute paths of the exporting machine (its checkout, its virtualenv), so they
    leak where a bundle was built and make the same model export to different bytes on every
    machine, which breaks the bundle's content hashes and the codec id derived from them.
    Module scopes and op names stay: they are what a reader of the graph needs.
    """
    import onnx

    model = onnx.load(str(path))

    def clean(graph) -> None:  # a GraphProto or a FunctionProto: both hold nodes
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key not in _SOURCE_LOCATION_KEYS]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            node.doc_string = ""
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    clean(attr.g)
                for sub in attr.graphs:
                    clean(sub)

    clean(model.graph)
    for function in model.functions:
        clean(function)
    onnx.save(model, str(path))


def _max_abs_diff(path: Path, module: PartModule, example: torch.Tensor) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {module.spec.inputs[0]: example.numpy()})
    with torch.no_grad():
        ref = module(example)
    ref = ref if isinstance(ref, tuple) else (ref,)
    diffs = []
    for name, g, r in zip(module.spec.outputs, got, ref):
        if g.shape != tuple(r.shape):
            raise ExportError(f"{module.spec.name}: output {name} has shape {g.shape} in ONNX Runtime, {tuple(r.shape)} in torch")
        diffs.append(float(np.abs(g.astype(np.float64) - r.double().numpy()).max()))
    return max(diffs)


def build_entropy_tables(model: CompressedDomainModel) -> EntropyTables:
    pmfs, offsets = model.z_prior_tables()
    return EntropyTables(trit=build_trit_tables(), z=build_z_tables(pmfs, offsets)).validate()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from edge_sdk.runtime import __version__

    return {"edge_sdk": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": str(OPSET)}


def export_bundle(
    model: CompressedDomainModel,
    out_dir: str | Path,
    *,
    quality: float,
    weights: WeightsInfo,
    description: str = "",
    sizes: tuple[tuple[int, int], ...] = ((256, 256), (192, 320)),
    force: bool = False,
    progress: Optional[ProgressFn] = None,
    controller=None,
) -> Manifest:
    """Export every part of ``model`` at ``quality`` into the bundle directory ``out_dir``.

    ``controller`` (a ``runtime.Controller`` fitted for these weights) is stored in the
    bundle, re-keyed to the classifier graph just written.

    ``sizes[0]`` is traced; every size is verified in ONNX Runtime. Returns the manifest.
    Raises :class:`ExportError` (and leaves ``out_dir`` untouched) when a graph differs from
    torch by more than ``MAX_ABS_DIFF``.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass force=True (--force) to replace it")
    refusal = replaceable_bundle_dir(out)
    if refusal:
        raise ExportError(f"will not replace {out}: {refusal}. Choose another --out or remove it yourself")
    for h, w in sizes:
        if h % model.padding_multiple or w % model.padding_multiple or min(h, w) < model.min_input_size:
            raise ExportError(f"size {h}x{w} is not a multiple of {model.padding_multiple} of at least {model.min_input_size}")
    step = progress or (lambda _msg: None)
    model = model.eval()
    with atomic_directory(out) as tmp:
        refs = [_reference_inputs(model, quality, h, w, seed=i) for i, (h, w) in enumerate(sizes)]
        shapes = _tensor_shapes(model)
        graphs = {}
        for spec in EXPORT_PARTS:
            if spec.optional and model.classifier_tiling is None:
                step(f"skip {spec.name} (the classifier does not split into a trunk and a head)")
                continue
            step(f"export {spec.name}")
            module = PartModule(model, spec, quality).eval()
            path = tmp / f"{spec.name}.onnx"
            _export_graph(module, _part_input(spec, refs[0]), path)
            diff = max(_max_abs_diff(path, module, _part_input(spec, r)) for r in refs)
            if not np.isfinite(diff) or diff > MAX_ABS_DIFF:
                raise ExportError(f"{spec.name}: ONNX Runtime differs from torch by {diff:.3g} (limit {MAX_ABS_DIFF})")
            graphs[spec.name] = GraphEntry(
                file=path.name,
                sha256=sha256_file(path),
                bytes=path.stat().st_size,
                inputs=tuple(TensorSpec(n, tuple(shapes[spec.input_kind])) for n in spec.inputs),
                outputs=tuple(TensorSpec(n, tuple(shapes[_OUTPUT_KIND[n]])) for n in spec.outputs),
                max_abs_diff=diff,
                verified_sizes=tuple((int(h), int(w)) for h, w in sizes),
            )
        step("entropy tables")
        tables = build_entropy_tables(model)
        step("integer prior")
        integer_prior = _write_integer_prior(model, quality, tables, refs, tmp)
        step("channel priorities")
        priority = channel_priority(model, quality, [r["y_hat"] for r in refs])
        expected = GRAPH_NAMES + (TRUNK_GRAPH_NAMES if model.classifier_tiling is not None else ())
        if sorted(graphs) != sorted(expected):
            raise ExportError(f"exported graphs {sorted(graphs)} differ from the bundle format's {sorted(expected)}")
        tiling = model.classifier_tiling
        manifest = Manifest(
            model=ModelSection(name=model.model_name, description=description, quality=float(quality),
                               num_qualities=int(model.num_qualities), latent_channels=int(model.latent_channels),
                               hyper_channels=int(model.hyper_channels), num_classes=int(model.num_classes)),
            weights=WeightsSection(random_parts=tuple(weights.random_parts), sources=tuple(weights.sources)),
            image=ImageSection(padding_multiple=int(model.padding_multiple), min_size=int(model.min_input_size),
                               backbone_normalization=dict(model.normalization)),
            quantization={
                "y": "residual = round(y - means), y_hat = means + residual",
                "z": "z_hat = round(z); hyper_analysis already subtracts the prior's medians",
                "scale_bound": SCALE_BOUND,
            },
            graphs=graphs,
            entropy=entropy_to_manifest(tables, priority),
            integer_prior=integer_prior,
            classes=tuple(model.class_names()),
            classifier_tiling=None if tiling is None else ClassifierTilingSection(
                scale_num=int(tiling.scale_num), scale_den=int(tiling.scale_den), margin=int(tiling.margin)),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            exporter=_versions(),
            codec_id=codec_id(model.model_name, quality, {n: g.sha256 for n, g in graphs.items()}, tables.digest,
                              integer_prior.sha256 if integer_prior else None, priority).hex(),
        )
        step("write bundle")
        write_manifest(tmp, manifest)
        if controller is not None:
            attach_controller(tmp, dataclasses.replace(controller, classifier_sha256=graphs["classifier"].sha256))
            manifest = read_manifest(tmp)
        (tmp / "README.md").write_text(_bundle_readme(manifest), encoding="utf-8")
    return manifest


#: the integer prior must pick the float prior's index or a neighbour this often on the
#: export's reference images, or the conversion is broken (lite0: > 99.9 %, docs/prior.md)
MIN_INDEX_AGREEMENT = 0.99


@torch.no_grad()
def _write_integer_prior(model: CompressedDomainModel, quality: float, tables: EntropyTables, refs: list[dict],
                         folder: Path) -> Optional[SidecarEntry]:
    """Convert the hyper-synthesis to the integer prior (prior_mode INTEGER) and check it
    against the float one; None when the model's hyper-synthesis does not convert."""
    from ..models.hyper_synthesis import IntegerPriorUnsupported
    from .integer_prior import DEFAULT_ACTIVATION_BITS, DEFAULT_WEIGHT_BITS, convert_hyper_synthesis

    try:
        layers = model.hyper_synthesis_layers(quality)
    except IntegerPriorUnsupported:
        return None
    zs = [r["z"].numpy() for r in refs]
    prior = convert_hyper_synthesis(layers, tables, calibration_z=zs)
    exact = near = total = 0
    mean_error = 0.0
    for z in zs:
        means_f, scales = model.hyper_synthesis(torch.from_numpy(z), quality)
        want = scale_to_index(scales[0].numpy(), tables.trit.scales).astype(np.int64)
        means_i, got = prior.parameters(z[0].astype(np.int64))
        exact += int((got == want).sum())
        near += int((np.abs(got.astype(np.int64) - want) <= 1).sum())
        total += want.size
        mean_error = max(mean_error, float(np.abs(means_i - means_f[0].numpy()).max()))
    if near < MIN_INDEX_AGREEMENT * total:
        raise ExportError(f"integer prior: only {near / total:.1%} of scale indices within one bucket of the float "
                          f"prior's (need {MIN_INDEX_AGREEMENT:.0%}); the conversion failed")
    file = folder / INTEGER_PRIOR_FILE
    prior.save(file)
    return SidecarEntry(file.name, sha256_file(file), {
        "activation_bits": DEFAULT_ACTIVATION_BITS, "weight_bits": DEFAULT_WEIGHT_BITS,
        "index_agreement": {"exact": exact / total, "within_one": near / total, "elements": total},
        "max_abs_mean_difference": mean_error})


def _bundle_readme(manifest: Manifest) -> str:
    model = manifest.model
    random_parts = manifest.weights.random_parts
    lines = [
        f"# edge-sdk bundle: {model.name} at quality {model.quality:g}",
        "",
        model.description,
        "",
    ]
    if random_parts:
        lines += [
            f"**WARNING: RANDOM WEIGHTS in {', '.join(random_parts)}.** This bundle exercises the pipeline;",
            "its compression rates and predictions mean nothing.",
            "",
        ]
    lines += [
        "| graph | input | output | ONNX Runtime vs torch (max abs diff) |",
        "|---|---|---|---|",
    ]
    for g in manifest.graphs.values():
        fmt = lambda ts: ", ".join(f"`{t.name}` {list(t.shape)}" for t in ts)  # noqa: E731
        lines.append(f"| `{g.file}` | {fmt(g.inputs)} | {fmt(g.outputs)} | {g.max_abs_diff:.2g} |")
    lines += [
        "",
        f"Images are float32 RGB in [0, 1], NCHW, padded to a multiple of {manifest.image.padding_multiple} "
        f"(at least {manifest.image.min_size} px). Weight sources:",
        "",
    ]
    for src in manifest.weights.sources:
        lines.append(f"- {src.get('part', 'all')}: {src['source']}")
    lines += [
        "",
        f"`manifest.json` holds the sha256 of every file, tensor names, {len(manifest.classes)} class names and the",
        "entropy tables; `edge-sdk inspect <this folder>` checks them. Exported by edge-sdk "
        f"{manifest.exporter['edge_sdk']} with torch {manifest.exporter['torch']} on {manifest.created}.",
        "",
    ]
    return "\n".join(lines)
