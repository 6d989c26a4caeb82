"""Precision planning for TensorRT engines: which graph runs in which precision, and the
FP16 / INT8 ONNX that TensorRT 11's strongly typed builds need (torch-free).

TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrator: the ONNX itself
must say which tensors are FP16 or INT8 (../shared/notes/deployment.md §1).

* The hyperprior side (:data:`FP32_GRAPHS`) is FP32 at every precision (docs/tensorrt.md).
* FP16: onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types``, so the
  graph still takes and returns float32 and the runtime does not change (this is the fix
  rf-detr #1454 shipped after TensorRT 11 silently built FP32 engines).
* INT8: explicit, symmetric Q/DQ pairs (the only INT8 form TensorRT 11 accepts) from ONNX
  Runtime's static quantizer, per-channel weights, activations calibrated on the real inputs
  the caller passes in (``edge_sdk.calibration.int8`` makes them from photos). NVIDIA's
  ModelOpt does the same job; it needs torch ≥ 2.8 and pins onnx / onnxruntime versions, so
  the quantizer that ships with ONNX Runtime is used.

Both run anywhere ONNX Runtime does, so the converted graphs are checked against the FP32
ones under ONNX Runtime before any GPU is involved (``tests/runtime/test_tensorrt_build.py``).
onnx, onnxconverter-common and onnxruntime are imported only when a conversion runs.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ...bundle import Bundle
from ...errors import PrecisionError
from ...fileio import atomic_write

PRECISIONS = ("fp32", "fp16", "int8")
#: graphs whose outputs must not move: they decide what the encoder writes or (float prior)
#: how a stream is parsed; they are built in FP32 whatever precision is asked for
#: the classifier's head is one matrix product on a pooled vector: nothing to gain below FP32
FP32_GRAPHS = ("analysis", "hyper_analysis", "hyper_synthesis", "classifier_head")


def precision_plan(precision: str, graphs: tuple[str, ...]) -> dict[str, str]:
    """The precision each graph is built in: the hyperprior side always FP32 (docs/tensorrt.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {g: "fp32" if g in FP32_GRAPHS else precision for g in graphs}


def convert_fp16(source: str | Path, target: str | Path) -> str:
    """Write an FP16 copy of ``source`` with float32 inputs and outputs; returns its sha256."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        raise PrecisionError("FP16 conversion needs onnx and onnxconverter-common "
                             "(pip install 'edge-sdk[trt]')") from exc
    model = onnx.load(str(source))
    with warnings.catch_warnings():  # it warns for every constant it clamps to the FP16 range
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    return _save(half.SerializeToString(), target)


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable[dict[str, np.ndarray]],
                  method: str = "minmax") -> str:
    """Write a Q/DQ INT8 copy of ``source`` calibrated on ``calibration`` (feeds by input name);
    returns its sha256."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise PrecisionError("INT8 Q/DQ needs onnxruntime's quantization tools (pip install 'edge-sdk[trt]')") from exc
    feeds = list(calibration)
    if not feeds:
        raise PrecisionError("INT8 needs calibration inputs (real images: --calib-images); none were given")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self._it, None)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise PrecisionError(f"calibration method must be one of {sorted(methods)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method],
                        # TensorRT takes symmetric INT8 only (zero point 0)
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        return _save(out.read_bytes(), target)


def converted_onnx(bundle: Bundle, graph: str, precision: str, folder: Path,
                   calibration: Optional[Iterable[dict[str, np.ndarray]]] = None,
                   calibration_method: str = "minmax") -> tuple[Path, str]:
    """The ONNX TensorRT parses for ``graph`` at ``precision``: the bundle's (FP32), or an FP16 /
    Q/DQ copy written into ``folder`` as ``<graph>.<precision>.onnx``. Returns (path, sha256)."""
    source = bundle.graph_path(graph)
    if precision == "fp32":
        return source, bundle.graphs[graph].sha256
    target = folder / f"{graph}.{precision}.onnx"
    digest = (convert_fp16(source, target) if precision == "fp16"
              else quantize_int8(source, target, calibration or [], calibration_method))
    return target, digest


def _save(data: bytes, target: str | Path) -> str:
    atomic_write(target, data)
    return hashlib.sha256(data).hexdigest()
