"""Precision baked into the ONNX, for TensorRT 11's strongly typed builds (torch-free).

TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrator: the ONNX itself
must say which tensors are FP16 or INT8 (../shared/notes/deployment.md §1).

* FP16: onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types``, so the
  graph still takes and returns float32 and the runtime does not change (this is the fix
  rf-detr #1454 shipped after TensorRT 11 silently built FP32 engines).
* INT8: explicit, symmetric Q/DQ pairs (the only INT8 form TensorRT 11 accepts) from ONNX
  Runtime's static quantizer, per-channel weights, activations calibrated on real inputs
  (``calibration.int8``). NVIDIA's ModelOpt does the same job; it needs torch ≥ 2.8 and
  pins onnx / onnxruntime versions, so the quantizer that ships with ONNX Runtime is used.

Both run anywhere ONNX Runtime does, so the converted graphs are checked against the FP32
ones under ONNX Runtime before any GPU is involved (``tests/export/test_engine.py``).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np


class PrecisionError(RuntimeError):
    """A graph cannot be converted to the precision asked for."""


def convert_fp16(source: str | Path, target: str | Path) -> str:
    """Write an FP16 copy of ``source`` with float32 inputs and outputs; returns its sha256."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        raise PrecisionError("FP16 conversion needs onnx and onnxconverter-common "
                             "(pip install 'edge-sdk[trt]')") from exc
    import warnings

    model = onnx.load(str(source))
    with warnings.catch_warnings():  # it warns for every constant it clamps to the FP16 range
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    return _save(half, target)


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable[dict[str, np.ndarray]],
                  method: str = "minmax") -> str:
    """Write a Q/DQ INT8 copy of ``source`` calibrated on ``calibration`` (feeds by input name)."""
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
        data = out.read_bytes()
    Path(target).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _save(model, target: str | Path) -> str:
    data = model.SerializeToString()
    Path(target).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
