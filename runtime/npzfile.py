"""Reading the ``.npz`` sidecars a bundle ships (entropy tables, integer prior): plain arrays only."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def read_npz(path: str | Path, error: type[Exception], what: str) -> dict[str, np.ndarray]:
    """Every array of ``path``, pickles refused; any unreadable or damaged file raises
    ``error`` naming ``what`` was expected, so callers keep their own error types."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise error(f"cannot read {what} from {path}: {exc}") from exc
