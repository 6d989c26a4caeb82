"""The CLI on real streams: inspect, truncate, errors, JSON output."""

import json

import pytest
from typer.testing import CliRunner

from helpers import make_latent, prior_of
from edge_sdk.cli import app
from edge_sdk.runtime import StreamInfo, decode_stream, encode_latent, level_boundaries

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tables, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    y, means, kidx, z = make_latent(tables, (16, 6, 8), seed=30)
    data = encode_latent(y, means, kidx, z, tables, info=StreamInfo(quality=5))
    (root / "s.edgt").write_bytes(data)
    tables.save(root / "tables.npz")
    return root, data, means, kidx


def test_help_teaches_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("inspect", "truncate", "version"):
        assert command in result.output


def test_inspect_json_describes_levels(files, tables):
    root, data, *_ = files
    result = runner.invoke(app, ["inspect", str(root / "s.edgt"), "--tables", str(root / "tables.npz"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["codec_id"] == tables.digest[:4].hex() and info["quality"] == 5
    assert info["header_bytes"] <= 32 and info["level_table_bytes"] > 0
    assert info["tables_match"] is True
    assert [row["bytes_total"] for row in info["level_table"]] == level_boundaries(data)
    assert info["decodable_level"] == info["levels"]


def test_inspect_human_output_and_garbage(files, tmp_path):
    root, *_ = files
    assert "levels" in runner.invoke(app, ["inspect", str(root / "s.edgt")]).output
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a stream at all")
    result = runner.invoke(app, ["inspect", str(junk)])
    assert result.exit_code == 2 and "magic" in result.output


def test_truncate_to_budget_gives_a_decodable_prefix(files, tables, tmp_path):
    root, data, means, kidx = files
    out = tmp_path / "cut.edgt"
    budget = len(data) // 2
    result = runner.invoke(app, ["truncate", str(root / "s.edgt"), "--max-bytes", str(budget), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    cut = out.read_bytes()
    assert len(cut) == info["bytes"] <= budget
    dec = decode_stream(cut, tables, prior_of(means, kidx))
    assert dec.level == info["level"] > 0
    assert not list(tmp_path.glob(".cut.edgt.*")), "temporary file left behind"


def test_truncate_refuses_bad_requests(files, tmp_path):
    root, *_ = files
    src = str(root / "s.edgt")
    out = str(tmp_path / "o.edgt")
    assert runner.invoke(app, ["truncate", src, "-o", out]).exit_code == 2
    assert runner.invoke(app, ["truncate", src, "-o", out, "--level", "100000"]).exit_code == 2
    assert runner.invoke(app, ["truncate", src, "-o", out, "--max-bytes", "5"]).exit_code == 2
    assert not (tmp_path / "o.edgt").exists()
