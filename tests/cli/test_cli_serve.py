"""`edge-sdk serve`: a real server process on 127.0.0.1 that serves streams with ranges and encodes uploads."""

import select
import subprocess
import sys

import pytest

from edge_sdk.runtime.backends import open_backend
from edge_sdk.runtime.pipeline import Decoder, Encoder
from edge_sdk.runtime.remote import FetchPolicy

urllib3 = pytest.importorskip("urllib3")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    Image.fromarray(data.coffee()[:120, :160]).save(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    process = subprocess.Popen([sys.executable, "-m", "edge_sdk", "serve", "--root", str(root), "--bundle",
                                str(tiny_bundle), "--port", "0", "--threads", "1", "--max-upload-mb", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60.0)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("serving "), f"serve did not start: {line!r}"
        yield root, line.split(" at ")[1].split()[0].rstrip("/")
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
        process.stderr.close()


def test_upload_is_encoded_served_with_ranges_and_fetched(server, photo, tiny_bundle):
    root, url = server
    answer = urllib3.request("POST", f"{url}/upload?name=coffee", body=photo.read_bytes(),
                             headers={"Content-Type": "image/png"}, timeout=60.0)  # the first encode loads graphs
    assert answer.status == 201, answer.data
    assert answer.json()["url"] == "/coffee.edgt"
    backend = open_backend("ort:cpu", threads=1)
    want = Encoder(tiny_bundle, backend).encode(photo)  # the integer prior: the same bytes on any backend setup
    assert (root / "coffee.edgt").read_bytes() == want and answer.json()["bytes"] == len(want)
    part = urllib3.request("GET", f"{url}/coffee.edgt", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and part.data == want[:100]
    decoder = Decoder(tiny_bundle, backend)
    # a first request shorter than the stream (the tiny model's streams are about 1 KB, the default prefix)
    fetched = decoder.fetch(f"{url}/coffee.edgt", level=3, policy=FetchPolicy(initial_bytes=256))
    assert fetched.prediction.top_k == decoder.classify(want, level=3).top_k
    assert fetched.stats.bytes_fetched < len(want)


def test_uploads_are_checked_and_never_leave_half_a_stream(server, photo):
    root, url = server
    before = sorted(p.name for p in root.iterdir())
    checks = [
        ({"Content-Type": "text/plain"}, b"hello", "", 415),
        ({"Content-Type": "image/png"}, b"\x89PNG" + bytes(600_000), "", 413),  # over --max-upload-mb 0.5
        ({"Content-Type": "image/png"}, photo.read_bytes(), "?name=../escape", 400),
        ({"Content-Type": "image/png"}, b"\x89PNG not really", "?name=broken", 422),
    ]
    for headers, body, query, status in checks:
        answer = urllib3.request("POST", f"{url}/upload{query}", body=body, headers=headers, timeout=60.0)
        assert answer.status == status, (status, answer.data)
        assert "error" in answer.json()
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written, no temporary file left
