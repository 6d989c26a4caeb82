"""The per-level report counts every byte of each prefix and walks every level."""

import numpy as np
import torch

from edge_sdk.export.models.lite0 import Lite0Model
from edge_sdk.export.training.report import level_report, pad_to_multiple


def test_levels_count_bytes_of_the_prefix_and_end_at_full_depth():
    torch.manual_seed(0)
    model = Lite0Model().eval()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)  # padded to 128x128 inside
    report = level_report(model, 2.0, [("p", photo)])
    rows = report["per_photo"]["p"]
    assert [r["level"] for r in rows] == list(range(len(rows)))
    assert rows[-1]["level"] == rows[-1]["levels"]
    sizes = [r["bytes"] for r in rows]
    assert sizes == sorted(sizes) and sizes[0] > 0
    assert all(abs(r["bpp"] - r["bytes"] * 8 / (70 * 90)) < 1e-9 for r in rows)
    assert report["summary"][-1]["bpp"] == rows[-1]["bpp"] and report["summary"][0]["bpp"] == rows[0]["bpp"]
    assert all(r["teacher_top1"] == rows[0]["teacher_top1"] for r in rows)


def test_padding_replicates_to_the_multiple_and_minimum():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded, (ph, pw) = pad_to_multiple(x, 4, 8)
    assert padded.shape[-2:] == (8, 8) and (ph, pw) == (5, 4)
    assert torch.equal(padded[..., 7, 7], x[..., 2, 3])
