"""Atomic writes leave either the old file or the new one, never a mix, and no debris."""

from pathlib import Path

import pytest

from edge_sdk.runtime.fileio import atomic_directory, atomic_file, atomic_write, sha256_file


def test_atomic_write_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    atomic_write(target, b"one")
    atomic_write(target, "two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_failed_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_directory_swaps_whole_folders(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(ValueError):
        with atomic_directory(out) as tmp:
            (tmp / "a.txt").write_text("new")
            raise ValueError("export failed")
    assert [p.name for p in out.iterdir()] == ["stale.txt"]
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_atomic_directory_permissions_follow_umask(tmp_path: Path) -> None:
    import os
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "d") as tmp:
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_sha256_file(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_outputs_get_the_umask_mode_not_mkstemps_private_one(tmp_path: Path) -> None:
    import os
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "stream.edgt", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "stream.edgt").stat().st_mode & 0o777 == 0o644
