"""tools/aarch64/crosscheck.py's own logic, on this machine only (the aarch64 run is tools/aarch64/run.sh).

Both "machines" are this one: the comparison must then find everything equal, and it must name
the stream and level once one recorded hash is changed.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY_BUNDLE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crosscheck():
    spec = importlib.util.spec_from_file_location("crosscheck", ROOT / "tools" / "aarch64" / "crosscheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory, crosscheck):
    tmp = tmp_path_factory.mktemp("crosscheck")
    rng = np.random.default_rng(0)
    photos = []
    for i in range(2):
        # smooth gradients plus noise: residuals of every size, some escaping in the escape variant
        yy, xx = np.mgrid[0:96, 0:128]
        img = np.stack([xx * 2, yy * 2, (xx + yy)], -1) + rng.integers(0, 40, (96, 128, 3))
        photos.append(tmp / f"p{i}.png")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos[-1])
    (tmp / "photos.txt").write_text("\n".join(map(str, photos)))
    a, b = tmp / "a", tmp / "b"
    common = ["--bundle", str(TINY_BUNDLE), "--short-side", "0"]
    assert crosscheck.main(["encode", *common, "--photos", str(tmp / "photos.txt"), "--out", str(a)]) == 0
    assert crosscheck.main(["encode", *common, "--photos", str(tmp / "photos.txt"), "--out", str(b),
                            "--latents-from", str(a)]) == 0
    for k in (0, 1):  # machine b decodes a's streams in two shards, merged (as run.sh does)
        assert crosscheck.main(["decode", "--bundle", str(TINY_BUNDLE), "--streams", str(a / "streams"),
                                "--shard", f"{k}/2", "--out", str(a / f"decode-b.{k}.json")]) == 0
    assert crosscheck.main(["merge", "--out", str(a / "decode-b.json"), str(a / "decode-b.0.json"),
                            str(a / "decode-b.1.json")]) == 0
    for streams, out in ((a / "streams", a / "decode-a.json"),
                         (b / "reencoded", b / "decode-reencoded-a.json"),
                         (b / "streams", b / "decode-a.json"), (b / "streams", b / "decode-b.json")):
        assert crosscheck.main(["decode", "--bundle", str(TINY_BUNDLE), "--streams", str(streams),
                                "--out", str(out)]) == 0
    return a, b


def compare(crosscheck, a, b, out):
    return crosscheck.main(["compare", "--a", str(a), "--b", str(b),
                            "--a-decodes-a", str(a / "decode-a.json"), "--b-decodes-a", str(a / "decode-b.json"),
                            "--a-decodes-b-reencoded", str(b / "decode-reencoded-a.json"),
                            "--a-decodes-b", str(b / "decode-a.json"), "--b-decodes-b", str(b / "decode-b.json"),
                            "--out", str(out)])


def test_same_machine_is_bit_exact(crosscheck, runs, tmp_path):
    a, b = runs
    assert compare(crosscheck, a, b, tmp_path / "c.json") == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["bit_exact"]
    assert result["reencode_b_vs_a"] == {**result["reencode_b_vs_a"], "streams": 6, "equal": 6, "differing": []}
    assert result["reencode_b_vs_a"]["streams_with_escapes"] >= 2  # the escape variants do escape
    for decoded in (result["decode_a_streams"], result["decode_b_reencoded"], result["decode_b_streams"]):
        assert decoded["streams"] == 6 and decoded["levels"] > 6 and not decoded["differing"]
        assert decoded["top1_checked"] == decoded["top1_agree"] == 4 * 2  # 4 photo streams x 2 checkpoints
        assert decoded["logit_max_abs"] == 0.0 and decoded["image_differing_pixels"] == 0


def test_a_changed_level_is_found(crosscheck, runs, tmp_path):
    a, b = runs
    report = json.loads((a / "decode-b.json").read_text())
    name = sorted(report["streams"])[0]
    report["streams"][name]["y_hat"][1] = "0" * 32
    report["streams"][name]["means"] = "0" * 32
    (a / "decode-b.json").write_text(json.dumps(report))
    try:
        assert compare(crosscheck, a, b, tmp_path / "c.json") == 1
        result = json.loads((tmp_path / "c.json").read_text())
        assert result["decode_a_streams"]["differing"] == {name: ["means", "y_hat@levels[1]"]}
        assert result["decode_b_reencoded"]["differing"] == {name: ["means", "y_hat@levels[1]"]}
        assert not result["bit_exact"]
    finally:
        crosscheck.main(["decode", "--bundle", str(TINY_BUNDLE), "--streams", str(a / "streams"),
                         "--out", str(a / "decode-b.json")])
