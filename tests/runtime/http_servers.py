"""HTTP servers for the fetch tests, each a real process on 127.0.0.1 that the tests start and stop.

``python http_servers.py static ROOT`` serves ROOT with uvicorn and Starlette's ``StaticFiles``
(the well-kept server: Range, If-Range, ETag, 416 are Starlette's own). ``python
http_servers.py faults ROOT`` is a small purpose-built server for the faults a well-behaved
server never shows; the first path segment picks the fault, the rest names a file in ROOT:

- ``/plain/F``    ranges, ETag and If-Range done right (the reference for the faults below)
- ``/norange/F``  ignores Range: every answer is a 200 with the whole file
- ``/replace/F``  from the second request on serves ``ROOT/other-F`` under another ETag, honouring
  If-Range (so the client gets a 200 with the new file)
- ``/relabel/F``  from the second request on, the same bytes under another ETag, If-Range ignored (206)
- ``/shrink/F``   from the second request on, the file is 100 bytes long (416 past them)
- ``/slow/F``     from the second request on, waits 6 s before answering
- ``/trickle/F``  from the second request on, sends the body one byte every 50 ms
- ``/drop/F``     the second request's body stops halfway and the connection closes; later ones are fine
- ``/die/F``      the second request's body stops halfway and the whole server process exits
- ``/flaky/F``    the first request gets a 503
- ``/forget/F``   sends no ETag or date; from the second request on ignores Range and serves
  ``ROOT/other-F`` whole (only the bytes tell the files apart)
- ``/badrange/F`` answers ranges with a 206 whose Content-Range names other bytes than asked
- ``/short/F``    answers every range with at most 300 bytes (legal: the client must ask again)
- ``/redirect/F`` a 302 to ``/plain/F``; ``/loop/F`` a 302 to itself
Both print the port they listen on as their first line of output.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve_static(root: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with another test run
    sock.listen(128)  # connections queue from now on, before uvicorn has started: the port is ready
    print(sock.getsockname()[1], flush=True)
    app = Starlette(routes=[Mount("/", StaticFiles(directory=root))])
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30)).run(sockets=[sock])


def serve_faults(root: str) -> None:
    counts: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers

        def log_message(self, *args) -> None:  # quiet: the tests read stdout for the port only
            pass

        def _send(self, status: int, headers: dict, body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            _, mode, name = self.path.split("/", 2)
            with lock:
                counts[mode, name] += 1
                count = counts[mode, name]
            if mode in ("redirect", "loop"):
                return self._send(302, {"Location": f"/{'plain' if mode == 'redirect' else 'loop'}/{name}"})
            if mode == "flaky" and count == 1:
                return self._send(503, {})
            path, etag = Path(root) / name, '"v1"'
            if mode in ("replace", "forget") and count > 1:
                path, etag = Path(root) / f"other-{name}", '"v2"'
            if not path.is_file():
                return self._send(404, {})
            body = path.read_bytes()
            if mode == "relabel" and count > 1:
                etag = '"v2"'
            if mode == "shrink" and count > 1:
                body = body[:100]
            if mode == "slow" and count > 1:
                time.sleep(6.0)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if_range = self.headers.get("If-Range")
            if mode == "norange" or (mode == "forget" and count > 1) or (if_range is not None and if_range != etag and mode != "relabel"):
                match = None
            headers = {"Accept-Ranges": "bytes"} if mode == "forget" else {"ETag": etag, "Accept-Ranges": "bytes"}
            status = 200
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(body) - 1, len(body) - 1)
                if mode == "short":
                    end = min(end, start + 299)
                if start >= len(body):
                    return self._send(416, {"Content-Range": f"bytes */{len(body)}"})
                status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{len(body)}"
                if mode == "badrange":
                    headers["Content-Range"] = f"bytes {start + 1}-{end}/{len(body)}"
                body = body[start:end + 1]
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if mode == "trickle" and count > 1:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            elif mode in ("drop", "die") and count == 2:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if mode == "die":
                    os._exit(0)  # the server process is gone mid-body, as on a crash
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    kind, directory = sys.argv[1], sys.argv[2]
    (serve_static if kind == "static" else serve_faults)(directory)
