"""Neighborhood attention: plain-op implementation vs a loop reference of NATTEN 0.17.5, and ONNX export.

NATTEN itself cannot be installed here (CUDA/C++ extension), so the reference below is written
from NATTEN 0.17.5's naive CPU kernel (``csrc/include/natten/cpu/naive/natten_cpu_commons.h``:
``get_window_start`` and ``get_pb_start`` for dilation 1, bias read at ``rpb[h, pi + ki, pj + kj]``)
and ``na2d.py`` (qkv layout, scale, softmax, proj), one query and one neighbour at a time.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from edge_sdk.export.models.attention import NeighborhoodAttention2D, neighborhood_window_indices


def natten_window_start(index: int, length: int, radius: int) -> int:
    """NATTEN's get_window_start, non-causal, dilation 1."""
    return max(index - radius, 0) + (index + radius >= length) * (length - index - radius - 1)


def natten_bias_start(index: int, length: int, radius: int) -> int:
    """NATTEN's get_pb_start, dilation 1."""
    return radius + (index < radius) * (radius - index) + (index + radius >= length) * (length - index - 1 - radius)


def reference_neighborhood_attention(module: NeighborhoodAttention2D, x: torch.Tensor) -> torch.Tensor:
    """Slow, literal NATTEN semantics: loops over batch, head, query and neighbour."""
    batch, height, width, dim = x.shape
    heads, k = module.num_heads, module.kernel_size
    head_dim, radius = dim // heads, k // 2
    with torch.no_grad():
        qkv = module.qkv(x).double().numpy()  # channels [q | k | v], each head-major
        rpb = module.rpb.double().numpy()
    out = np.zeros((batch, height, width, dim))
    for b in range(batch):
        for h in range(heads):
            channels = slice(h * head_dim, (h + 1) * head_dim)
            q = qkv[b, :, :, 0 * dim:1 * dim][..., channels] * head_dim ** -0.5
            key = qkv[b, :, :, 1 * dim:2 * dim][..., channels]
            value = qkv[b, :, :, 2 * dim:3 * dim][..., channels]
            for i in range(height):
                ni, pi = natten_window_start(i, height, radius), natten_bias_start(i, height, radius)
                for j in range(width):
                    nj, pj = natten_window_start(j, width, radius), natten_bias_start(j, width, radius)
                    logits, values = [], []
                    for ki in range(k):
                        for kj in range(k):
                            logits.append(float(q[i, j] @ key[ni + ki, nj + kj]) + rpb[h, pi + ki, pj + kj])
                            values.append(value[ni + ki, nj + kj])
                    weights = np.exp(np.array(logits) - max(logits))
                    weights /= weights.sum()
                    out[b, i, j, channels] = (weights[:, None] * np.stack(values)).sum(axis=0)
    with torch.no_grad():
        return module.proj(torch.from_numpy(out).float())


def random_module(dim: int, heads: int, k: int, seed: int) -> NeighborhoodAttention2D:
    torch.manual_seed(seed)
    module = NeighborhoodAttention2D(dim, heads, k).eval()
    with torch.no_grad():
        # Large enough that a wrong bias index or window would change the result visibly.
        module.rpb.normal_(0.0, 1.0)
        module.qkv.bias.normal_(0.0, 0.5)
    return module


@pytest.mark.parametrize("k", [3, 5, 7])
def test_window_tables_match_natten_formulas(k: int) -> None:
    radius = k // 2
    for length in range(k, 40):  # NATTEN requires length >= kernel size
        keys, bias = neighborhood_window_indices(length, k, torch.device("cpu"))
        for p in range(length):
            start = natten_window_start(p, length, radius)
            assert start == min(max(p - radius, 0), length - k)  # the note's clamp form
            assert keys[p].tolist() == list(range(start, start + k))
            pb = natten_bias_start(p, length, radius)
            assert bias[p].tolist() == list(range(pb, pb + k))


@pytest.mark.parametrize(
    "batch,height,width,dim,heads,k",
    [
        (1, 7, 7, 8, 1, 7),  # H == W == k: one window for everyone
        (1, 10, 7, 16, 2, 7),  # W == k, non-square
        (2, 9, 13, 24, 4, 7),
        (2, 3, 9, 12, 3, 3),  # H == k
        (1, 6, 5, 6, 2, 3),
        (1, 8, 11, 20, 5, 5),
    ],
)
def test_matches_loop_reference(batch: int, height: int, width: int, dim: int, heads: int, k: int) -> None:
    module = random_module(dim, heads, k, seed=height * 100 + width)
    x = torch.randn(batch, height, width, dim, generator=torch.Generator().manual_seed(k))
    with torch.no_grad():
        got = module(x)
    expected = reference_neighborhood_attention(module, x)
    assert got.shape == (batch, height, width, dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_parameter_names_and_shapes_match_natten() -> None:
    module = NeighborhoodAttention2D(96, 3, 7)
    shapes = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    assert shapes == {
        "qkv.weight": (288, 96), "qkv.bias": (288,), "rpb": (3, 13, 13),
        "proj.weight": (96, 96), "proj.bias": (96,),
    }
    assert math.isclose(module.scale, 32 ** -0.5)


def test_rejects_inputs_smaller_than_the_kernel() -> None:
    module = NeighborhoodAttention2D(8, 2, 7)
    with pytest.raises(ValueError, match="kernel_size"):
        module(torch.zeros(1, 6, 9, 8))


def test_onnx_export_with_dynamic_height_and_width(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from torch.export import Dim

    module = random_module(24, 3, 3, seed=0)
    path = tmp_path / "na.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(1, 9, 11, 24),), str(path), dynamo=True, external_data=False,
            input_names=["x"], output_names=["y"],
            dynamic_shapes=({0: Dim("batch", max=64), 1: Dim("height", min=3, max=4096),
                             2: Dim("width", min=3, max=4096)},),
            verbose=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 9, 11, 24), (2, 3, 3, 24), (1, 20, 6, 24), (1, 4, 17, 24)]:
        x = torch.randn(*shape)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = module(x).numpy()
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
