"""Model definitions: the interface every exportable model implements, the registry and checkpoint loading.

``base`` (``CompressedDomainModel``, the exported parts), ``layers`` / ``attention`` /
``entropy_models`` (building blocks), ``hyperprior`` (the gain mean-scale codec lite0 and tiny share), ``hyper_synthesis`` (how a model describes its
hyper-synthesis to the integer-prior converter), the registered models ``lite0``, ``polc``
and ``tiny`` (the test model), imported by the registry on first use, ``registry`` and
``checkpoint``.
"""

from .base import EXPORT_PARTS, SCALE_BOUND, CompressedDomainModel, PartModule, PartSpec
from .checkpoint import CheckpointError, LoadReport, MissingWeightsError, load_checkpoint, read_state_dict
from .registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = [
    "EXPORT_PARTS",
    "SCALE_BOUND",
    "CheckpointError",
    "CompressedDomainModel",
    "LoadReport",
    "MissingWeightsError",
    "ModelInfo",
    "PartModule",
    "PartSpec",
    "create_model",
    "get_model_info",
    "list_models",
    "load_checkpoint",
    "read_state_dict",
    "register_model",
]
