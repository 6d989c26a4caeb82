"""`edge-sdk run --input URL`, a .txt list of URLs and --concurrency, against a real server on 127.0.0.1."""

import json

import pytest
from typer.testing import CliRunner

from edge_sdk.cli import app
from helpers import HTTPServerProcess

runner = CliRunner()
pytest.importorskip("urllib3")


def _rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def served(tiny_bundle, tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    photos = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.coffee()[:120, :160]).save(photos / "coffee.png")
    Image.fromarray(data.chelsea()[:100, :140]).save(photos / "chelsea.png")
    root = tmp_path_factory.mktemp("streams")
    result = runner.invoke(app, ["encode", str(photos), "--bundle", str(tiny_bundle), "--out", str(root),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    with HTTPServerProcess("static", root) as server:
        yield root, server.url


def test_run_fetches_urls_and_url_lists(tiny_bundle, served, tmp_path):
    root, url = served
    local = _rows(runner.invoke(app, ["run", "--input", str(root), "--bundle", str(tiny_bundle), "--json",
                                      "--threads", "1"]).output)
    by_name = {row["file"].rsplit("/", 1)[-1]: row for row in local}
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# two streams and a missing one\n{url}/chelsea.edgt\n\n{url}/missing.edgt\n")
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--input", str(listing), "--bundle",
                                 str(tiny_bundle), "--json", "--concurrency", "2", "--threads", "1"])
    assert result.exit_code == 1, result.output  # the missing URL fails; the others are answered
    rows = _rows(result.output)
    assert [row["file"] for row in rows] == [f"{url}/coffee.edgt", f"{url}/chelsea.edgt", f"{url}/missing.edgt"]
    for row in rows[:2]:
        want = by_name[row["file"].rsplit("/", 1)[-1]]
        assert row["top_k"] == want["top_k"] and row["level"] == want["level"] == row["levels"]
        assert row["fetch"]["bytes_fetched"] == row["bytes_total"] and row["fetch"]["requests"] >= 1
    assert rows[2]["error_type"] == "HTTPStatusError" and "404" in rows[2]["error"] and "partial" not in rows[2]
    # a link whose bandwidth-delay product holds the stream: one request each
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--bundle", str(tiny_bundle), "--json",
                                 "--link", "1000,1000", "--threads", "1"])
    assert result.exit_code == 0 and _rows(result.output)[0]["fetch"]["requests"] == 1
    # the human table names the fetch cost
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--bundle", str(tiny_bundle), "--threads", "1"])
    assert result.exit_code == 0 and "fetched in" in result.output


def test_run_url_mistakes_are_clear_errors(tiny_bundle, served, tmp_path):
    root, url = served
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{url}/coffee.edgt\nnot-a-url\n")
    result = runner.invoke(app, ["run", "--input", str(bad), "--bundle", str(tiny_bundle)])
    assert result.exit_code == 2 and "bad.txt:2" in result.output
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--bundle", str(tiny_bundle), "--trace"])
    assert result.exit_code == 2 and "--trace" in result.output
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--bundle", str(tiny_bundle),
                                 "--concurrency", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["run", "--input", f"{url}/coffee.edgt", "--bundle", str(tiny_bundle),
                                 "--link", "fast"])
    assert result.exit_code == 2 and "--link" in result.output
