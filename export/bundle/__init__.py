"""Writing bundles: a registered model (and checkpoint) → six ONNX graphs verified against torch,
the integer prior, ``manifest.json`` (``edge_sdk.runtime.manifest``) and a README.

``exporter`` (``export_model``, what ``edge-sdk export`` runs), ``onnx_export`` (``export_bundle``
for a model object) and ``integer_prior`` (the hyper-synthesis → integer network conversion).
"""

from .exporter import export_model, prepare_model
from .onnx_export import EXPORT_STEPS, ExportError, ProgressFn, WeightsInfo, build_entropy_tables, export_bundle

__all__ = [
    "EXPORT_STEPS",
    "ExportError",
    "ProgressFn",
    "WeightsInfo",
    "build_entropy_tables",
    "export_bundle",
    "export_model",
    "prepare_model",
]
