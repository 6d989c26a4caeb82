"""Checkpoint loading with an explicit report of what went where.

Accepts our own safetensors files and torch pickles (``.pth``, ``.pth.tar``, ``.pt``) holding
either a bare state dict or a training checkpoint with a ``state_dict`` entry. Models whose
official checkpoints use other names implement ``remap_checkpoint(state_dict)`` returning
(state dict in our names, {ignored key: reason}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .base import CompressedDomainModel


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


class MissingWeightsError(CheckpointError):
    """The model has parts without trained weights and random weights were not allowed."""


@dataclass
class LoadReport:
    """What a checkpoint load did, for humans (``summary``) and for the manifest (``as_dict``)."""

    source: str
    mapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    shape_mismatch: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "mapped": len(self.mapped),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "ignored": self.ignored,
            "shape_mismatch": self.shape_mismatch,
        }

    def summary(self) -> str:
        lines = [f"{self.source}: {len(self.mapped)} tensors mapped, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected, {len(self.ignored)} ignored"]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.shape_mismatch)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", … (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        reasons: dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in sorted(reasons.items()):
            lines.append(f"  ignored {count}: {reason}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from training-checkpoint containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for damaged files
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_into(model: CompressedDomainModel, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load what fits (after the model's own remapping) and report everything else."""
    ignored: dict[str, str] = {}
    remap = getattr(model, "remap_checkpoint", None)
    if remap is not None:
        state, ignored = remap(state)
    own = model.state_dict()
    report = LoadReport(source=source, ignored=dict(ignored))
    loadable = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.shape_mismatch.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            loadable[key] = value.to(own[key].dtype)
    model.load_state_dict(loadable, strict=False)
    report.mapped = sorted(loadable)
    report.missing = sorted(k for k in own if k not in loadable)
    return report


def load_checkpoint(model: CompressedDomainModel, path: str | Path) -> LoadReport:
    return load_state_dict_into(model, read_state_dict(path), str(path))


def weight_group_of(model: CompressedDomainModel, key: str) -> str:
    for group, prefixes in model.weight_groups().items():
        if key.startswith(prefixes):
            return group
    return "codec"


def random_groups(model: CompressedDomainModel, loaded_keys: set[str]) -> list[str]:
    """Weight groups (codec, adapter, backbone, …) with at least one tensor nobody loaded."""
    groups = set()
    for key in model.state_dict():
        if key not in loaded_keys and not key.endswith("num_batches_tracked"):
            groups.add(weight_group_of(model, key))
    return sorted(groups)
