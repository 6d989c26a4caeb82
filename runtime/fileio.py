"""Writing files and folders so that a reader never sees half of one, and hashing them.

Every command that writes (streams, reconstructions, bundles, engines, datasets, checkpoints,
plots, reports) goes through here: a crash or a full disk leaves the previous file in place
and, at worst, a hidden ``.NAME.*`` temporary next to it, never a truncated output.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "atomic_file", "atomic_directory", "sha256_file", "sweep_dead_writers"]


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (bundles hold graphs of hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_dead_writers(path: str | Path) -> list[Path]:
    """Tidy what a writer of ``path`` killed outright (SIGKILL, power loss) left beside it.

    Temporaries are named ``.NAME.tmp-PID-*`` (and a replaced folder ``.NAME.old-PID-*``), so
    those of a process that no longer exists are known to be abandoned: temporaries are
    removed; an ``.old`` folder is renamed back to ``NAME`` when ``NAME`` is missing (the
    writer died between its two renames, so the previous version is restored), else removed.
    Live writers' files and anything not named this way are never touched. Returns what was
    removed or restored.
    """
    path = Path(path)
    touched = []
    stem = path.stem if not path.is_dir() and path.suffix else path.name
    for prefix in {f".{path.name}.", f".{stem}."}:
        for sibling in sorted(path.parent.glob(f"{prefix}*")) if path.parent.is_dir() else ():
            kind, _, rest = sibling.name[len(prefix):].partition("-")
            pid_text = rest.partition("-")[0]
            if kind not in ("tmp", "old") or not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            if kind == "old" and not path.exists() and sibling.is_dir():
                sibling.rename(path)
            elif sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    sibling.unlink()
            touched.append(sibling)
    return touched


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is fsynced and renamed onto ``path``.

    For writers that want a file name rather than bytes (``torch.save``, ``savefig``,
    ``safetensors``): whatever they write there replaces ``path`` in one rename. The temporary
    keeps ``path``'s suffix because some writers choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_writers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); an output gets what open() would give it
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (``str`` is written as UTF-8) to ``path`` in one rename."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path) as tmp:
        tmp.write_bytes(payload)


@contextlib.contextmanager
def atomic_directory(out: str | Path, mode_from_umask: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on a clean exit it replaces ``out``.

    An existing ``out`` is renamed aside first and deleted only once the new folder is in
    place, so an interrupted write never leaves ``out`` missing or half-filled. ``mkdtemp``
    makes folders private (0700); with ``mode_from_umask`` the result gets the permissions of a
    normal ``mkdir`` instead (bundles and datasets are shared folders).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_writers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    if mode_from_umask:
        os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            os.rmdir(old)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

