"""edge-sdk export side: torch model definitions, checkpoint loading, ONNX bundle export, and
TensorRT engine builds.

Needs the ``[export]`` extra (torch, timm, onnx) for the models. Typical use::

    from edge_sdk.export import export_model, list_models
    export_model("lite0", "bundles/lite0", checkpoint="lite0.safetensors")

Models register by name (``registry.register_model``); ``create_model(name)`` builds one
with random weights and ``checkpoint.load_checkpoint`` fills it with a key report.

The names below load lazily, so the torch-free modules (``engine``, ``precision``) can be
imported on a Jetson that has TensorRT and ONNX but no torch.
"""

from importlib import import_module

_LAZY = {"export_model": ".exporter", "prepare_model": ".exporter", "create_model": ".registry",
         "get_model_info": ".registry", "list_models": ".registry", "register_model": ".registry"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
