"""``edge-sdk c-lib``: build the C ABI (libedgesdk.so, edge_sdk.h, edgesdk.pc) for C and C++ apps."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_sdk.cli.common import app, console, fail


@app.command("c-lib")
def c_lib(out: Path = typer.Option(..., "--out", help="Folder to write libedgesdk.so, edge_sdk.h and edgesdk.pc "
                                   "into: new, empty, or an earlier c-lib output (replaced at once)")) -> None:
    """Build the C library of edge-sdk's decoder and encoder, tied to this Python environment (docs/c-api.md)."""
    from edge_sdk.capi import LIBRARY, PKG_CONFIG, build_library

    try:
        folder = build_library(out)
    except RuntimeError as exc:
        fail(str(exc))
    console.print(f"wrote {folder}: {LIBRARY}, edge_sdk.h, {PKG_CONFIG}", soft_wrap=True)
    console.print(f"build an app: cc app.c $(PKG_CONFIG_PATH={folder} pkg-config --cflags --libs edgesdk) -o app",
                  soft_wrap=True, markup=False)
