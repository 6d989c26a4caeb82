"""Training: photo datasets (``data``, torch-free), ``edge-sdk train`` (``train``), the per-level
report of a torch model on held-out photos (``report``) and the model card (``model_card``).

The names load lazily so that ``edge_sdk.export.training.data`` (``edge-sdk data prepare``)
does not import torch.
"""

from importlib import import_module

_LAZY = {
    "DataError": ".data", "PhotoSource": ".data", "prepare_dataset": ".data",
    "TrainConfig": ".train", "TrainError": ".train", "export_weights": ".train",
    "level_report": ".report", "write_model_card": ".model_card",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
