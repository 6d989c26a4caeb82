"""edge-sdk export side: torch model definitions, checkpoint loading, ONNX bundle export and training.

Needs the ``[export]`` extra (torch, timm, onnx); training needs ``[train]``. Typical use::

    from edge_sdk.export import export_model, list_models
    export_model("lite0", "bundles/lite0", checkpoint="lite0.safetensors")

Subpackages, one concern each:

* ``models``: the model interface (``base``), building blocks, the registered models
  (``lite0``, ``polc``), the registry (``register_model`` / ``create_model``) and checkpoint
  loading with a key report;
* ``bundle``: a model → a verified bundle directory (``exporter``, ``onnx_export``) and the
  integer prior conversion it stores;
* ``training``: photo datasets (``data``), ``edge-sdk train`` (``train``), the per-level
  report and the model card written next to trained weights.

The names below load lazily, so ``import edge_sdk.export`` costs nothing and the torch-free
modules of this package can be imported where torch is not installed.
"""

from importlib import import_module

_LAZY = {"export_model": ".bundle.exporter", "prepare_model": ".bundle.exporter", "create_model": ".models.registry",
         "get_model_info": ".models.registry", "list_models": ".models.registry",
         "register_model": ".models.registry"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
