"""``edge-sdk serve``: a folder of streams over HTTP with range requests, and optionally an upload
endpoint that encodes photos into new streams.

Streams are plain files, so any range-capable server serves them (docs/streaming.md); this
command is a convenience around uvicorn and Starlette's ``StaticFiles`` (the ``[serve]`` extra),
which answers ``Range``, ``If-Range`` and ETags. With ``--bundle``, ``POST /upload?name=NAME``
takes a photo (JPEG, PNG, WebP, TIFF, BMP; at most ``--max-upload-mb``), encodes it with the
bundle and writes ``NAME.edgt`` atomically, so a client never fetches half a stream.
"""

from __future__ import annotations

import hashlib
import re
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from edge_sdk.cli.common import DEVICE_OPTION, THREADS_OPTION, app, backend_from_options, console, fail, open_bundle

#: what an upload may be, by Content-Type → the suffix Pillow reads it by
UPLOAD_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/tiff": ".tiff",
                "image/bmp": ".bmp"}
#: stream names: no folders, no hidden files, nothing a shell or URL would mangle
STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def build_app(root: Path, encoder: Any = None, max_upload_bytes: int = 20 << 20) -> Any:
    """The Starlette app: ``root`` as static files (ranges, ETags), and ``POST /upload`` when an
    ``encoder`` is given."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from edge_sdk.runtime.fileio import atomic_write
    from edge_sdk.runtime.images import ImageError

    encode_lock = threading.Lock()  # one encode at a time: it uses every core the backend was given

    def encode(data: bytes, suffix: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp, encode_lock:
            photo = Path(tmp) / f"upload{suffix}"  # read_image reads files: EXIF, modes, size guard
            photo.write_bytes(data)
            return encoder.encode(photo)

    async def upload(request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in UPLOAD_TYPES:
            return JSONResponse({"error": f"Content-Type {kind or 'none'} is not one of {sorted(UPLOAD_TYPES)}"}, 415)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes:
            return JSONResponse({"error": f"upload of {declared} bytes exceeds {max_upload_bytes}"}, 413)
        body = bytearray()
        async for block in request.stream():  # counted as it arrives: a missing or false length cannot slip by
            body += block
            if len(body) > max_upload_bytes:
                return JSONResponse({"error": f"upload exceeds {max_upload_bytes} bytes"}, 413)
        name = request.query_params.get("name") or hashlib.sha256(body).hexdigest()[:16]
        if not STREAM_NAME.fullmatch(name):
            return JSONResponse({"error": f"name {name!r} must be 1-100 letters, digits, '_' or '-' "
                                          "(no leading '-' or '_')"}, 400)
        try:
            stream = await run_in_threadpool(encode, bytes(body), UPLOAD_TYPES[kind])
        except ImageError as exc:
            return JSONResponse({"error": str(exc)}, 422)
        target = root / f"{name}.edgt"
        await run_in_threadpool(atomic_write, target, stream)
        return JSONResponse({"url": f"/{target.name}", "bytes": len(stream)}, 201)

    routes: list = []
    if encoder is not None:
        routes.append(Route("/upload", upload, methods=["POST"]))
    routes.append(Mount("/", StaticFiles(directory=str(root))))
    return Starlette(routes=routes)


@app.command()
def serve(
    root: Path = typer.Option(..., help="Folder of streams (.edgt) to serve; uploads are written here."),
    bundle: Optional[Path] = typer.Option(None, help="Accept photo uploads (POST /upload?name=NAME) and encode "
                                          "them with this bundle."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free one; the address is printed)."),
    short_side: int = typer.Option(0, help="Downscale uploads so the short side is this before encoding "
                                   "(224: EfficientNet-Lite0's scale); 0 encodes them as they are."),
    max_upload_mb: float = typer.Option(20.0, help="Largest upload accepted, in MB."),
    device: str = DEVICE_OPTION,
    threads: int = THREADS_OPTION,
) -> None:
    """Serve a folder of streams over HTTP with range requests (what `Decoder.fetch` and
    `edge-sdk run --input http://...` read), and with --bundle encode uploaded photos into it.

    Any server that answers range requests serves streams equally well (nginx, an object
    store, a CDN); this is the one-command way on a laptop or an edge box.
    """
    try:
        import uvicorn
    except ImportError:
        fail("edge-sdk serve needs uvicorn and starlette: pip install 'edge-sdk[serve]'")
    if not root.is_dir():
        fail(f"--root {root} is not a folder")
    if max_upload_mb <= 0:
        fail("--max-upload-mb must be positive")
    encoder = None
    if bundle is not None:
        from edge_sdk.runtime.pipeline import Encoder

        loaded = open_bundle(bundle)
        encoder = Encoder(loaded, backend_from_options(loaded, device, threads), short_side=short_side)
    web = build_app(root.resolve(), encoder, int(max_upload_mb * (1 << 20)))
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    sock.listen(128)  # bound and listening before the address is printed: a client may connect at once
    shown = f"[{host}]" if ":" in host else host
    console.print(f"serving {root} at http://{shown}:{sock.getsockname()[1]}/"
                  + (" (POST /upload encodes photos)" if encoder is not None else ""), soft_wrap=True)
    uvicorn.Server(uvicorn.Config(web, log_level="warning")).run(sockets=[sock])
