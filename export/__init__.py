"""edge-sdk export side: torch model definitions, checkpoint loading and ONNX bundle export.

Needs the ``[export]`` extra (torch, timm, onnx). Typical use::

    from edge_sdk.export import export_model, list_models
    export_model("lite0", "bundles/lite0", checkpoint="lite0.safetensors")

Models register by name (``registry.register_model``); ``create_model(name)`` builds one
with random weights and ``checkpoint.load_checkpoint`` fills it with a key report.
"""

from .exporter import export_model, prepare_model
from .registry import create_model, get_model_info, list_models, register_model

__all__ = ["create_model", "export_model", "get_model_info", "list_models", "prepare_model", "register_model"]
