"""Model registry: one name → one builder, timm style.

Builders register themselves with ``@register_model`` when their module is
imported; ``create_model`` imports the built-in model modules lazily so that
``import edge_sdk.export.models.registry`` stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

_BUILTIN_MODULES = ("edge_sdk.export.models.lite0", "edge_sdk.export.models.polc", "edge_sdk.export.models.tiny")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it."""

    name: str
    builder: Callable[..., object]
    description: str
    qualities: tuple[int, ...]
    default_quality: int
    #: How the trained weights are found when no checkpoint is given: a short
    #: human sentence shown in errors and in ``edge-sdk export --help``.
    weights_hint: str
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelInfo] = {}
_loaded = False


def register_model(
    name: str,
    *,
    description: str,
    qualities: tuple[int, ...],
    default_quality: int,
    weights_hint: str,
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Decorator registering ``builder(**kwargs) -> CompressedDomainModel`` under ``name``."""

    if default_quality not in qualities:
        raise ValueError(f"default quality {default_quality} not in {qualities}")

    def wrap(builder: Callable[..., object]) -> Callable[..., object]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, builder, description, tuple(qualities), default_quality, weights_hint, tags)
        return builder

    return wrap


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, **kwargs):
    """Build a registered model with random weights (load weights with ``edge_sdk.export.models.checkpoint``)."""
    return get_model_info(name).builder(**kwargs)
