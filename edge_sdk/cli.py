"""The ``edge-sdk`` command line.

Commands that exist today work on streams without a model: ``inspect`` shows
what a stream holds and where each level ends; ``truncate`` cuts a stream to a
level, as a server does for a client that asked for fewer bytes. Model-based
commands (export, encode, decode, run, calibrate, eval, build) arrive with
their issues; until then they are absent rather than stubbed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edge_sdk import __version__
from edge_sdk.runtime import (
    FORMAT_VERSION,
    BitstreamError,
    EntropyTables,
    TableError,
    level_boundaries,
    read_header,
    truncate_to_level,
)

app = typer.Typer(
    name="edge-sdk",
    help="Progressive, machine-oriented learned image compression for edge GPUs.\n\n"
    "A stream is one progressive bitstream per image: a header, the z section, then "
    "chunks; any prefix that ends on a chunk boundary decodes to a level.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _read_stream(path: Path) -> bytes:
    """The file's bytes once its header has been checked; a clear exit otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    try:
        read_header(data)
    except BitstreamError as exc:
        _fail(f"{path}: {exc}")
    return data


def _describe(data: bytes) -> dict:
    h = read_header(data)
    ends = level_boundaries(data)
    header_bytes = ends[0] - h.z_length
    levels = []
    for j, end in enumerate(ends):
        plane = None if j == 0 else h.plane_of_chunk(j - 1)
        levels.append(
            {
                "level": j,
                "plane": plane if plane is None or plane < h.num_planes else "escape",
                "symbols": 0 if j == 0 else h.chunks[j - 1].symbols,
                "bytes_total": end,
                "complete": end <= len(data),
            }
        )
    available = max(j for j, e in enumerate(ends) if e <= len(data)) if len(data) >= ends[0] else None
    return {
        "format_version": FORMAT_VERSION,
        "model_name": h.model_name,
        "bundle_hash": h.bundle_hash.hex(),
        "tables_hash": h.tables_hash.hex(),
        "image_size": list(h.image_size),
        "padding": list(h.padding),
        "quality": h.quality,
        "prior_mode": h.prior_mode.name.lower(),
        "ordering": h.ordering.name.lower(),
        "y_shape": list(h.y_shape),
        "z_shape": list(h.z_shape),
        "planes": h.num_planes,
        "chunks_per_plane": list(h.chunks_per_plane),
        "levels": h.num_levels,
        "header_bytes": header_bytes,
        "z_bytes": h.z_length,
        "stream_bytes": ends[-1],
        "file_bytes": len(data),
        "decodable_level": available,
        "level_table": levels,
    }


@app.command()
def inspect(
    stream: Path = typer.Argument(..., help="A stream file written by edge-sdk (or a prefix of one)."),
    tables: Optional[Path] = typer.Option(None, help="Entropy tables (.npz) to check the stream against."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show a stream's header, its chunk schedule and how many bytes each level needs.

    The header is checked (magic, version, CRC); payloads are not decoded, so
    no model is needed. With --tables, also checks that the stream was coded
    with those entropy tables.
    """
    info = _describe(_read_stream(stream))
    if tables is not None:
        try:
            digest = EntropyTables.load(tables).digest.hex()
        except TableError as exc:
            _fail(str(exc))
        info["tables_match"] = digest == info["tables_hash"]
    if as_json:
        print(json.dumps(info))
        return
    summary = Table(title=f"{stream.name}: edge-sdk stream v{info['format_version']}", show_header=False)
    for key in ("model_name", "quality", "image_size", "padding", "y_shape", "z_shape", "prior_mode", "ordering",
                "planes", "chunks_per_plane", "levels", "header_bytes", "z_bytes", "stream_bytes", "file_bytes",
                "decodable_level", "tables_hash", "bundle_hash", "tables_match"):  # fmt: skip
        if key in info:
            summary.add_row(key, str(info[key]))
    console.print(summary)
    levels = Table(title="levels (bytes needed to decode each)")
    for col in ("level", "plane", "symbols", "bytes_total", "complete"):
        levels.add_column(col, justify="right")
    for row in info["level_table"]:
        levels.add_row(*(str(row[c]) if row[c] is not None else "z" for c in ("level", "plane", "symbols", "bytes_total", "complete")))
    console.print(levels)


@app.command()
def truncate(
    stream: Path = typer.Argument(..., help="A complete or partial stream."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the shorter stream (written atomically)."),
    level: Optional[int] = typer.Option(None, help="Keep exactly this level (0 = z only)."),
    max_bytes: Optional[int] = typer.Option(None, help="Keep the highest level that fits in this many bytes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Cut a stream at a chunk boundary, as a server does for a client with a byte budget.

    Give --level or --max-bytes. The result is a valid stream that decodes to
    the chosen level on any edge-sdk decoder.
    """
    if (level is None) == (max_bytes is None):
        _fail("give exactly one of --level and --max-bytes")
    data = _read_stream(stream)
    ends = level_boundaries(data)
    if max_bytes is not None:
        fitting = [j for j, e in enumerate(ends) if e <= min(max_bytes, len(data))]
        if not fitting:
            _fail(f"{max_bytes} bytes cannot hold the header and z section ({ends[0]} bytes)")
        level = fitting[-1]
    if not 0 <= level < len(ends):
        _fail(f"level must lie in 0..{len(ends) - 1}")
    if ends[level] > len(data):
        _fail(f"{stream} holds only {len(data)} bytes; level {level} needs {ends[level]}")
    cut = truncate_to_level(data, level)
    write_atomic(out, cut)
    result = {"level": level, "levels": len(ends) - 1, "bytes": len(cut), "stream_bytes": ends[-1], "out": str(out)}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"wrote {out}: level {level} of {len(ends) - 1}, {len(cut)} of {ends[-1]} bytes")


@app.command()
def version() -> None:
    """Print the edge-sdk version and the stream format version it reads."""
    print(f"edge-sdk {__version__} (stream format {FORMAT_VERSION})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
