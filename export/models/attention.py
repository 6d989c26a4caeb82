"""Neighborhood attention (Hassani et al., NATTEN 0.17.5 semantics) in plain PyTorch ops.

POLC's codec and adapters use ``natten.NeighborhoodAttention2D``, whose ``na2d_qk`` /
``na2d_av`` are C++/CUDA custom ops with no ONNX (or TensorRT) lowering, and the NATTEN
maintainers declined to add one. This module re-implements the same computation with
``arange``/``clamp``/``index_select``/``matmul``/``softmax`` so it exports to ONNX with
dynamic H and W, and keeps NATTEN's parameter names (``qkv``, ``rpb``, ``proj``) so
official weights load unchanged.

Semantics (2-D, dilation 1, kernel k, radius r = k // 2, input NHWC):

* the query at (i, j) attends to rows ``ws(i) .. ws(i)+k-1`` and columns
  ``ws(j) .. ws(j)+k-1`` with ``ws(p) = clamp(p - r, 0, L - k)``: at the borders the window
  shifts inward, so every query sees exactly k² keys (no padding);
* logits are ``(q · head_dim^-0.5) · k + rpb[h, (k_row - q_row) + k - 1, (k_col - q_col) + k - 1]``;
* softmax over the k² neighbours, weighted sum of v, heads concatenated, then ``proj``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def neighborhood_window_indices(length: int | torch.SymInt, kernel_size: int,
                                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Key positions and relative-bias positions of every query along one axis.

    Returns ``(keys, bias)``, both int64 of shape (length, kernel_size): ``keys[p, t]`` is
    the t-th key coordinate of query p, ``bias[p, t] = keys[p, t] - p + kernel_size - 1`` its
    index into one axis of the relative position bias table. ``length`` may be a symbolic
    size, so the tables are rebuilt from the runtime shape in an exported graph.
    """
    radius = kernel_size // 2
    positions = torch.arange(length, device=device)
    # ws(p) = clamp(p - r, 0, L - k). Written as min(max(.)) against a tensor built from
    # the (possibly symbolic) length, so exporting does not freeze L - k to a constant.
    last_start = torch.full_like(positions, length - kernel_size)
    starts = torch.minimum((positions - radius).clamp_min(0), last_start)
    offsets = torch.arange(kernel_size, device=device)
    keys = starts.unsqueeze(1) + offsets.unsqueeze(0)
    bias = keys - positions.unsqueeze(1) + (kernel_size - 1)
    return keys, bias


class NeighborhoodAttention2D(nn.Module):
    """Drop-in, exportable equivalent of ``natten.NeighborhoodAttention2D(rel_pos_bias=True)``.

    Input and output are NHWC, (B, H, W, dim); H and W must each be at least ``kernel_size``
    (NATTEN raises otherwise; here the window table would index out of range).
    Memory: the gathered keys and values are (B, H, W, k², dim) each.
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kernel_size = kernel_size
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        nn.init.trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        self.proj = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        heads, head_dim, k = self.num_heads, self.head_dim, self.kernel_size
        if height < k or width < k:
            # As NATTEN: the window would not fit (and the index tables would go negative).
            raise ValueError(f"neighborhood attention needs H and W >= kernel_size {k}, got {height}x{width}")
        bias_side = 2 * k - 1

        # Channel order of qkv is [q | k | v], each split head-major (as in NATTEN).
        qkv = self.qkv(x).reshape(batch, height * width, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0] * self.scale, qkv[1], qkv[2]  # (B, heads, H*W, head_dim)

        row_keys, row_bias = neighborhood_window_indices(height, k, x.device)
        col_keys, col_bias = neighborhood_window_indices(width, k, x.device)
        # One flat index per (query, neighbour) pair, laid out (H, W, k_row, k_col), so a
        # single Gather yields the neighbours already in (query, neighbour) order.
        flat_keys = (row_keys[:, None, :, None] * width + col_keys[None, :, None, :]).reshape(-1)
        flat_bias = (row_bias[:, None, :, None] * bias_side + col_bias[None, :, None, :]).reshape(-1)

        neighbours = (batch, heads, height * width, k * k, head_dim)
        key_windows = key.index_select(2, flat_keys).reshape(neighbours)
        value_windows = value.index_select(2, flat_keys).reshape(neighbours)
        bias = self.rpb.reshape(heads, bias_side * bias_side).index_select(1, flat_bias)
        bias = bias.reshape(1, heads, height * width, 1, k * k)

        # (B, heads, HW, 1, hd) @ (B, heads, HW, hd, k²): one small matmul per query.
        logits = query.unsqueeze(3) @ key_windows.transpose(-1, -2) + bias
        attention = F.softmax(logits, dim=-1)
        out = (attention @ value_windows).reshape(batch, heads, height, width, head_dim)
        out = out.permute(0, 2, 3, 1, 4).reshape(batch, height, width, channels)
        return self.proj(out)
