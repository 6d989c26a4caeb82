"""``edge-sdk inspect`` and ``truncate``: what a stream or a bundle holds, and cutting a stream to a level.

Neither runs a model: ``inspect`` checks a stream's header (or a bundle's files), ``truncate``
cuts a stream at a chunk boundary as a server does for a client that asked for fewer bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edge_sdk.cli.common import app, console, fail, open_bundle, read_stream
from edge_sdk.runtime import FORMAT_VERSION, EntropyTables, TableError, level_boundaries, truncate_to_level
from edge_sdk.runtime.bitstream import CODEC_ID_BYTES
from edge_sdk.runtime.codec import read_layout
from edge_sdk.runtime.fileio import atomic_write


def _describe(data: bytes) -> dict:
    h, table = read_layout(data)
    ends = level_boundaries(data)
    levels = [{"level": 0, "plane": None, "bytes": ends[0], "bytes_total": ends[0], "complete": ends[0] <= len(data)}]
    if table is not None:
        for j, end in enumerate(ends[1:], start=1):
            plane = table.plane_of_chunk(j - 1)
            levels.append({"level": j, "plane": plane if plane < table.num_planes else "escape",
                           "bytes": table.lengths[j - 1], "bytes_total": end, "complete": end <= len(data)})
    available = max(j for j, e in enumerate(ends) if e <= len(data)) if len(data) >= ends[0] else None
    return {
        "format_version": FORMAT_VERSION,
        "codec_id": h.codec_id.hex(),
        "image_size": list(h.image_size),
        "padding": list(h.padding),
        "quality": h.quality,
        "prior_mode": h.prior_mode.name.lower(),
        "ordering": h.ordering.name.lower(),
        "y_shape": list(h.y_shape),
        "z_size": list(h.z_size),
        "planes": None if table is None else table.num_planes,
        "chunks_per_plane": None if table is None else list(table.chunks_per_plane),
        "levels": None if table is None else table.num_levels,
        "header_bytes": h.size,
        "z_bytes": h.z_length,
        "level_table_bytes": None if table is None else table.size,
        "stream_bytes": ends[-1] if table is not None else None,
        "file_bytes": len(data),
        "decodable_level": available,
        "level_table": levels,
    }


def _describe_bundle(path: Path) -> dict:
    bundle = open_bundle(path)
    m = bundle.manifest
    return {
        "bundle": str(path),
        "model": m.model.name,
        "quality": m.model.quality,
        "latent_channels": m.model.latent_channels,
        "hyper_channels": m.model.hyper_channels,
        "classes": len(bundle.class_names),
        "random_parts": bundle.random_parts,
        "weight_sources": [f"{s.get('part', 'all')}: {s['source']}" for s in m.weights.sources],
        "padding_multiple": bundle.padding_multiple,
        "min_size": bundle.min_size,
        "codec_id": bundle.codec_id.hex(),
        "tables_hash": bundle.tables.digest.hex(),
        "graphs": {
            name: {"file": g.path.name, "bytes": g.path.stat().st_size, "max_abs_diff": g.max_abs_diff,
                   "inputs": [t.name for t in g.inputs], "outputs": [t.name for t in g.outputs]}
            for name, g in bundle.graphs.items()
        },
        "prior_modes": ["integer", "float"] if bundle.integer_prior is not None else ["float"],
        "integer_prior": m.integer_prior.to_dict() if m.integer_prior else None,
        "controller": bundle.controller is not None,
        "classifier_tiling": m.classifier_tiling.to_dict() if m.classifier_tiling else None,
        "memory": m.memory.to_dict() if m.memory else None,
        "exporter": m.exporter or {},
        "created": m.created,
        "verified": True,
    }


def _print_bundle(info: dict) -> None:
    summary = Table(title=f"{info['bundle']}: edge-sdk bundle", show_header=False)
    for key in ("model", "quality", "latent_channels", "hyper_channels", "classes", "padding_multiple", "min_size",
                "codec_id", "tables_hash", "created"):  # fmt: skip
        summary.add_row(key, str(info[key]))
    summary.add_row("weights", "\n".join(info["weight_sources"]))
    prior = info["integer_prior"]
    summary.add_row("prior modes", ", ".join(info["prior_modes"]) + (
        f" (integer: {prior['index_agreement']['exact']:.1%} of indices equal to the float prior's, "
        f"{prior['index_agreement']['within_one']:.2%} within one)" if prior else
        " (this model's hyper-synthesis does not convert: decode on the encoder's backend setup)"))
    summary.add_row("controller", "yes" if info["controller"] else "no (`edge-sdk calibrate`)")
    tiling = info["classifier_tiling"]
    summary.add_row("classifier", f"tiled above one trunk tile (margin {tiling['margin']} latent positions)" if tiling
                    else "whole latent in one call (no trunk and head graphs)")
    memory = info["memory"]
    summary.add_row("memory", "\n".join(
        f"{op}: {memory[op]['base_bytes'] / 2 ** 20:.0f} MB + {memory[op]['bytes_per_pixel']:.0f} B per pixel"
        for op in ("encode", "decode", "run")) + f"\n(measured: {memory['backend']}, {memory['threads']} threads)"
        if memory else "not measured: bounded by --max-pixels only (`edge-sdk measure-memory`)")
    console.print(summary)
    graphs = Table(title="graphs (sha256 verified)")
    for col in ("graph", "file", "MB", "inputs", "outputs", "max |ORT - torch|"):
        graphs.add_column(col)
    for name, g in info["graphs"].items():
        graphs.add_row(name, g["file"], f"{g['bytes'] / 1e6:.1f}", ", ".join(g["inputs"]), ", ".join(g["outputs"]),
                       f"{g['max_abs_diff']:.1e}")
    console.print(graphs)
    if info["random_parts"]:
        console.print(f"[bold yellow]RANDOM WEIGHTS[/bold yellow] in {', '.join(info['random_parts'])}: "
                      "results from this bundle mean nothing.")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A stream file written by edge-sdk (or a prefix of one), or a bundle directory."),
    tables: Optional[Path] = typer.Option(None, help="Entropy tables (.npz) to check the stream against."),
    bundle: Optional[Path] = typer.Option(None, help="A bundle directory to check the stream against."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show a stream's header and how many bytes each level needs, or check and describe a bundle.

    For a stream, the header is checked (magic, version, CRC); payloads are not
    decoded, so no model is needed. With --tables or --bundle, also checks that
    the stream was coded for those entropy tables (or that bundle: the stream's
    codec id names the bundle, quality and tables together).
    For a bundle directory, every file's sha256, the manifest and the entropy
    tables are verified.
    """
    if path.is_dir():
        info = _describe_bundle(path)
        if as_json:
            print(json.dumps(info))
        else:
            _print_bundle(info)
        return
    stream = path
    info = _describe(read_stream(stream))
    if tables is not None:
        try:
            digest = EntropyTables.load(tables).digest.hex()
        except TableError as exc:
            fail(str(exc))
        info["tables_match"] = digest[: 2 * CODEC_ID_BYTES] == info["codec_id"]
    if bundle is not None:
        loaded = open_bundle(bundle)
        info["bundle_match"] = loaded.stream_codec_id.hex() == info["codec_id"]
    if as_json:
        print(json.dumps(info))
        return
    summary = Table(title=f"{stream.name}: edge-sdk stream v{info['format_version']}", show_header=False)
    for key in ("codec_id", "quality", "image_size", "padding", "y_shape", "z_size", "prior_mode", "ordering",
                "planes", "chunks_per_plane", "levels", "header_bytes", "z_bytes", "level_table_bytes", "stream_bytes",
                "file_bytes", "decodable_level", "tables_match", "bundle_match"):  # fmt: skip
        if key in info:
            summary.add_row(key, str(info[key]))
    console.print(summary)
    levels = Table(title="levels (bytes needed to decode each)")
    for col in ("level", "plane", "bytes", "bytes_total", "complete"):
        levels.add_column(col, justify="right")
    for row in info["level_table"]:
        levels.add_row(*(str(row[c]) if row[c] is not None else "z" for c in ("level", "plane", "bytes", "bytes_total", "complete")))
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
        fail("give exactly one of --level and --max-bytes")
    data = read_stream(stream)
    ends = level_boundaries(data)
    if max_bytes is not None:
        fitting = [j for j, e in enumerate(ends) if e <= min(max_bytes, len(data))]
        if not fitting:
            fail(f"{max_bytes} bytes cannot hold the header and z section ({ends[0]} bytes)")
        level = fitting[-1]
    if not 0 <= level < len(ends):
        fail(f"level must lie in 0..{len(ends) - 1}")
    if ends[level] > len(data):
        fail(f"{stream} holds only {len(data)} bytes; level {level} needs {ends[level]}")
    cut = truncate_to_level(data, level)
    atomic_write(out, cut)
    result = {"level": level, "levels": len(ends) - 1, "bytes": len(cut), "stream_bytes": ends[-1], "out": str(out)}
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"wrote {out}: level {level} of {len(ends) - 1}, {len(cut)} of {ends[-1]} bytes")

