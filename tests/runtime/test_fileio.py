"""Atomic writes leave either the old file or the new one, never a mix, and no debris."""

import os
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


def test_a_killed_writers_temporaries_are_swept_and_a_half_replaced_folder_restored(tmp_path):
    import subprocess
    import sys

    from edge_sdk.runtime.fileio import sweep_dead_writers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: what SIGKILL leaves behind
    out = tmp_path / "bundle"
    (tmp_path / f".bundle.tmp-{pid}-abc").mkdir()
    (tmp_path / f".bundle.tmp-{pid}-abc" / "graph.onnx").write_bytes(b"x" * 100)
    old = tmp_path / f".bundle.old-{pid}-def"
    old.mkdir()
    (old / "manifest.json").write_text("{}")  # died between its two renames: bundle/ is missing
    live = tmp_path / f".bundle.tmp-{os.getpid()}-ghi"
    live.mkdir()  # a writer that is still running
    mine = tmp_path / ".bundle.tmp-notes"
    mine.write_text("someone's file")  # not named by a writer: never touched
    with atomic_directory(out) as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}')
    assert (out / "manifest.json").read_text() == '{"new": 1}'
    assert live.exists() and mine.exists()
    assert not any(p.name.startswith((f".bundle.tmp-{pid}", f".bundle.old-{pid}")) for p in tmp_path.iterdir())
    # the restore itself: an .old folder of a dead writer comes back when NAME is missing
    gone = tmp_path / "other"
    (tmp_path / f".other.old-{pid}-x").mkdir()
    (tmp_path / f".other.old-{pid}-x" / "kept").write_text("previous version")
    assert sweep_dead_writers(gone) and (gone / "kept").read_text() == "previous version"
    (tmp_path / f".x.tmp-{pid}-1.edgt").write_bytes(b"half")
    atomic_write(tmp_path / "x.edgt", b"whole")
    assert sorted(p.name for p in tmp_path.glob(".x.*")) == [] and (tmp_path / "x.edgt").read_bytes() == b"whole"


def test_sigterm_during_a_command_leaves_no_temporary(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # a CLI process writing through atomic_directory, stopped by SIGTERM while the folder is open
    script = (
        "import sys, time\n"
        "from edge_sdk.cli import main\n"
        "from edge_sdk.cli.common import app\n"
        "from edge_sdk.runtime.fileio import atomic_directory\n"
        "@app.command('slow-write-test')\n"
        "def slow(out: str):\n"
        "    with atomic_directory(out) as tmp:\n"
        "        (tmp / 'part').write_text('x'); print('writing', flush=True); time.sleep(60)\n"
        "sys.argv = ['edge-sdk', 'slow-write-test', sys.argv[1]]\n"
        "main()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # neither out/ nor a .out.tmp-* folder
