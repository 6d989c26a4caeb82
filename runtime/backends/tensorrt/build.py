"""``edge-sdk build``: TensorRT engines from a bundle's ONNX graphs (torch-free; runs on a Jetson).

* TensorRT 10 (JetPack 6): the FP32 ONNX, ``BuilderFlag.FP16`` / ``INT8``, and for INT8 an
  entropy calibrator over the calibration feeds the caller passes in, with a calibration
  cache next to the engines.
* TensorRT 11: strongly typed networks; the precision is converted into the ONNX first
  (:mod:`.precision`: FP16 with float32 I/O, or symmetric Q/DQ INT8 calibrated on the same feeds).
* The hyperprior graphs stay FP32 at every precision (:data:`.precision.FP32_GRAPHS`).
* One optimisation profile per graph for the padded image sizes asked for (min/opt/max), a
  timing cache shared by the builds, progress through ``IProgressMonitor``, and after each
  build the engine inspector must show the precision asked for (TensorRT 11 built FP32
  engines silently when the old flags were used: rf-detr #1453).

INT8 calibration data is an argument: per graph, an iterable of feeds (input name → float32
array) at the profile's optimal shape; ``edge_sdk.calibration.int8.int8_calibration_feeds``
makes them from real photos. ``convert_only=True`` writes the precision-converted ONNX files
without TensorRT: the export-host half of the TensorRT 11 path, and what ``edge-sdk verify
--backend onnx`` runs under ONNX Runtime. **Not run with TensorRT yet** (docs/tensorrt.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ... import __version__
from ...bundle import Bundle, GraphInfo
from ...errors import BackendError
from ...fileio import atomic_write
from .api import build_strategy, current_device, make_logger, tensorrt_module
from .cache import EngineDir, EngineKey, explain_tensorrt_error
from .cuda import CudaRuntime
from .precision import converted_onnx, precision_plan

ProgressFn = Callable[[str], None]
#: per graph, the INT8 calibration inputs: feeds (input name -> float32 array)
CalibrationFeeds = Mapping[str, Iterable[dict[str, np.ndarray]]]
#: padded image sizes (height, width) of the default shape profile: min, opt, max
DEFAULT_PROFILE_SIZES = ((64, 64), (512, 768), (2048, 2048))
TIMING_CACHE = "timing.cache"
WORKSPACE_BYTES = 2 << 30
#: the layer precisions the engine inspector reports, by what was asked for
EXPECTED_TYPES = {"fp16": ("half", "fp16"), "int8": ("int8",)}


def _dim(value: int | str, height: int, width: int) -> int:
    if isinstance(value, int):
        return value
    text = str(value).replace(" ", "")
    base, _, div = text.partition("/")
    if base not in ("H", "W"):
        raise ValueError(f"cannot resolve dimension {value!r}")
    side = height if base == "H" else width
    return side // int(div) if div else side


def profile_shapes(graph: GraphInfo, sizes=DEFAULT_PROFILE_SIZES) -> dict[str, list[list[int]]]:
    """min/opt/max shape of every input for padded image sizes ``sizes`` (from the manifest's
    symbolic dims such as ``H/16``)."""
    out = {}
    for spec in graph.inputs:
        out[spec.name] = [[_dim(d, h, w) for d in spec.shape] for h, w in sizes]
    return out


def rebuild_command(bundle: Bundle | None, engine_dir: Path, precision: str) -> str:
    where = bundle.path if bundle is not None else "BUNDLE"
    return f"edge-sdk build --bundle {where} --precision {precision} --out {engine_dir}"


def layer_precision_counts(inspector_json: str) -> dict[str, int]:
    """How many layer outputs of each data type an engine has (TensorRT's inspector JSON with
    ``ProfilingVerbosity.DETAILED``: ``Outputs[].Format/Datatype`` like "Half format ...")."""
    counts: dict[str, int] = {}
    try:
        doc = json.loads(inspector_json)
    except json.JSONDecodeError:
        return counts
    for layer in doc.get("Layers", []) if isinstance(doc, dict) else []:
        if not isinstance(layer, dict):
            continue
        for out in layer.get("Outputs", []):
            text = str(out.get("Format/Datatype", "")).lower() if isinstance(out, dict) else ""
            match = re.search(r"(half|fp16|int8|float|fp32|int32|bool|fp8|bf16)", text)
            if match:
                kind = {"half": "fp16", "float": "fp32"}.get(match.group(1), match.group(1))
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def precision_took_effect(precision: str, counts: dict[str, int]) -> bool:
    if precision == "fp32":
        return True
    return any(counts.get({"half": "fp16"}.get(t, t), 0) > 0 for t in EXPECTED_TYPES[precision])


def build_engines(bundle: Bundle, out_dir: str | Path, precision: str, *,
                  sizes=DEFAULT_PROFILE_SIZES, graphs: Optional[Sequence[str]] = None,
                  calibration: Optional[CalibrationFeeds] = None, convert_only: bool = False,
                  optimization_level: int = 3, calibration_method: str = "minmax",
                  progress: Optional[ProgressFn] = None) -> EngineDir:
    """Build (or, with ``convert_only``, only convert) every graph; returns the engine folder.

    ``graphs``: by default every graph the bundle has. ``calibration``: for every graph built in
    INT8, its calibration feeds (see the module docstring); required when ``precision`` is int8."""
    graphs = tuple(bundle.graphs) if graphs is None else tuple(graphs)
    step = progress or (lambda _m: None)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plan = precision_plan(precision, tuple(graphs))
    engines = EngineDir.open(folder)
    engines.bundle_codec_id = bundle.codec_id.hex()
    engines.profile_sizes = [list(hw) for hw in sizes]
    trt = device = None
    if not convert_only:
        trt = tensorrt_module()
        device = current_device(trt)
        strategy = build_strategy(device.tensorrt_version)
    else:
        strategy = "strongly-typed"  # the conversion TensorRT 11 needs
    calibration = dict(calibration or {})
    uncalibrated = [g for g, p in plan.items() if p == "int8" and not calibration.get(g)]
    if uncalibrated:
        raise BackendError(f"INT8 needs real calibration photos (--calib-images DIR) for {', '.join(uncalibrated)}: "
                           "random calibration data gives engines whose accuracy means nothing")
    for graph in graphs:
        p = plan[graph]
        profile = profile_shapes(bundle.graphs[graph], sizes)
        converted = strategy == "strongly-typed" and p != "fp32"
        step(f"{graph}: {'convert to ' + p if converted else 'FP32 ONNX'}")
        onnx_path, onnx_sha = (converted_onnx(bundle, graph, p, folder, calibration.get(graph), calibration_method)
                               if converted
                               else (bundle.graph_path(graph), bundle.graphs[graph].sha256))
        if convert_only:
            engines.entries[graph] = {"onnx": onnx_path.name if onnx_path.parent == folder else None,
                                      "onnx_sha256": onnx_sha, "precision": p, "source_sha256":
                                      bundle.graphs[graph].sha256, "profile": profile}
            engines.save()
            continue
        key = EngineKey(graph=graph, source_sha256=bundle.graphs[graph].sha256, onnx_sha256=onnx_sha, precision=p,
                        profile=profile, device=device, builder_optimization_level=optimization_level,
                        edge_sdk_version=__version__)
        if engines.is_current(key):
            step(f"{graph}: engine up to date")
            continue
        step(f"{graph}: build {p} engine ({strategy})")
        plan_bytes, counts = _build(trt, onnx_path, key, strategy, folder, calibration.get(graph), step,
                                    rebuild_command(bundle, folder, precision))
        if not precision_took_effect(p, counts):
            raise BackendError(f"{graph}: TensorRT built an engine without any {p.upper()} layer "
                               f"(layer types {counts}); refusing to label it {p}")
        engines.store(key, plan_bytes, {"layer_types": counts, "strategy": strategy})
    return engines


def _build(trt, onnx_path: Path, key: EngineKey, strategy: str, folder: Path,
           calibration: Optional[Iterable[dict[str, np.ndarray]]], step: ProgressFn,
           rebuild: str) -> tuple[bytes, dict[str, int]]:
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    # no creation flags: EXPLICIT_BATCH is gone in 10.x, and 11.x networks are strongly typed
    # always (its STRONGLY_TYPED flag is deprecated and was renumbered, so it is never passed)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{key.graph}: TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.builder_optimization_level = key.builder_optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in key.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    calibrator = None
    if strategy == "builder-flags" and key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    if strategy == "builder-flags" and key.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _entropy_calibrator(trt, calibration or [], folder / f"{key.graph}.calib")
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    timing_path = folder / TIMING_CACHE
    cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt, step, key.graph)
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{key.graph}: build failed: {explain_tensorrt_error(logger.text, rebuild)}")
    atomic_write(timing_path, bytes(config.get_timing_cache().serialize()))
    data = bytes(serialized)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise BackendError(f"{key.graph}: the engine just built does not load: "
                           f"{explain_tensorrt_error(logger.text, rebuild)}")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return data, layer_precision_counts(info)


def _progress_monitor(trt, step: ProgressFn, graph: str):
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            step(f"{graph}: {phase_name}")

        def step_complete(self, phase_name, step_index) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name) -> None:
            pass

    return Monitor()


def _entropy_calibrator(trt, feeds: Iterable[dict[str, np.ndarray]], cache_path: Path):
    """TensorRT 10's INT8 calibrator over ``feeds`` (batch 1), caching its table at ``cache_path``."""
    cuda = CudaRuntime()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._feeds = iter(feeds)
            self._buffers: dict[str, object] = {}
            self._stream = cuda.stream()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            feed = next(self._feeds, None)
            if feed is None:
                return None
            pointers = []
            for name in names:
                host = np.ascontiguousarray(feed[name], dtype=np.float32)
                if name not in self._buffers:
                    self._buffers[name] = cuda.malloc(host.nbytes)
                cuda.to_device(self._buffers[name], host, self._stream)
                pointers.append(cuda.pointer(self._buffers[name]))
            cuda.synchronize(self._stream)
            return pointers

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write(cache_path, bytes(cache))

    return Calibrator()
