"""2x2 max pooling, stride 2 (nn.MaxPool2d(2)), alone or after a ReLU, as one pass of a numba loop,
and the modules that the torch backend's models use it through (ReluMaxPool2d, NumbaMaxPool2d).

aten's CPU max_pool2d takes ~25 ns an output (800 us for a 32x6x24x24 batch); with its backward and
the ReLU, pooling was ~30% of a LeNet step at batch 128. This loop, forward and backward, is ~4x
faster than aten and ~2x faster than the torch ops it replaces (four strided views and an index).
The values and gradients are aten's, bit for bit: each window is scanned in aten's order (0,0),
(0,1), (1,0), (1,1), a later element taking over only if it is larger or NaN, and the whole
gradient goes to that element (with relu, nothing where the pooled value is <= 0: relu's own
backward). Odd sizes are floored, as MaxPool2d(2) does.
"""

from __future__ import annotations

import numba
import torch
import torch.nn as nn
import torch.nn.functional as F


@numba.njit(cache=True, nogil=True)
def _pool_forward(x, out, pos, relu):
    """out[p, i, j] = max of x[p, 2i:2i+2, 2j:2j+2] (then clamped at 0 with relu); pos = its place 0-3."""
    planes, h2, w2 = out.shape
    for p in range(planes):
        for i in range(h2):
            for j in range(w2):
                m, k = x[p, 2 * i, 2 * j], 0
                b = x[p, 2 * i, 2 * j + 1]
                if b > m or b != b:
                    m, k = b, 1
                c = x[p, 2 * i + 1, 2 * j]
                if c > m or c != c:
                    m, k = c, 2
                d = x[p, 2 * i + 1, 2 * j + 1]
                if d > m or d != d:
                    m, k = d, 3
                # torch.relu is clamp_min(x, 0): NaN and -0.0 stay as they are
                out[p, i, j] = 0 if relu and m < 0 else m
                pos[p, i, j] = k


@numba.njit(cache=True, nogil=True)
def _pool_values(x, out, relu):
    """_pool_forward's values alone (inference), with selects instead of branches: it vectorises, 2-4x faster."""
    planes, h2, w2 = out.shape
    for p in range(planes):
        for i in range(h2):
            top, bottom, o = x[p, 2 * i], x[p, 2 * i + 1], out[p, i]
            for j in range(w2):
                a, b, c, d = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]
                m = b if b > a else a  # the scan order decides between 0.0 and -0.0
                m = c if c > m else m
                m = d if d > m else m
                nan = (a != a) | (b != b) | (c != c) | (d != d)
                m = a + b + c + d if nan else m  # NaN
                o[j] = 0 if relu and m < 0 else m


@numba.njit(cache=True, nogil=True)
def _pool_backward(grad, out, pos, relu, grad_x):
    """Adds grad to each window's chosen element of grad_x (zeros); with relu, not where out <= 0."""
    planes, h2, w2 = out.shape
    for p in range(planes):
        for i in range(h2):
            g, o, q = grad[p, i], out[p, i], pos[p, i]
            for j in range(w2):
                if relu and o[j] <= 0:  # relu's backward, threshold_backward: NaN passes
                    continue
                grad_x[p, 2 * i + (q[j] >> 1), 2 * j + (q[j] & 1)] = g[j]


def _planes(t: torch.Tensor):
    """The NumPy view of an NCHW CPU tensor as (N*C, H, W) planes, no copy."""
    return t.numpy().reshape(-1, t.shape[-2], t.shape[-1])


def _input_and_output(x: torch.Tensor):
    """x as a contiguous tensor outside autograd, and an empty pooled output (odd sizes floored)."""
    x = x.detach().contiguous()
    n, c, h, w = x.shape
    return x, torch.empty(n, c, h // 2, w // 2, dtype=x.dtype)


class MaxPool2(torch.autograd.Function):
    """MaxPool2d(2)(relu(x)) when relu is True, MaxPool2d(2)(x) otherwise; x on the CPU, NCHW."""

    @staticmethod
    def forward(ctx, x, relu):
        x, out = _input_and_output(x)
        pos = torch.empty(out.shape, dtype=torch.uint8)
        _pool_forward(_planes(x), _planes(out), _planes(pos), relu)
        ctx.save_for_backward(out, pos)
        ctx.relu, ctx.input_size = relu, x.shape[-2:]
        return out

    @staticmethod
    def backward(ctx, grad):
        out, pos = ctx.saved_tensors
        grad_x = torch.zeros(*out.shape[:2], *ctx.input_size, dtype=grad.dtype)
        _pool_backward(_planes(grad.contiguous()), _planes(out), _planes(pos), ctx.relu, _planes(grad_x))
        return grad_x, None


def handles(x: torch.Tensor) -> bool:
    """Whether max_pool2 takes x: an NCHW float32/float64 tensor on the CPU."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4


def max_pool2(x: torch.Tensor, relu: bool) -> torch.Tensor:
    """MaxPool2d(2)(relu(x)) or MaxPool2d(2)(x), for x that `handles` takes; without autograd where
    none is needed."""
    if torch.is_grad_enabled() and x.requires_grad:
        return MaxPool2.apply(x, relu)
    x, out = _input_and_output(x)
    _pool_values(_planes(x), _planes(out), relu)
    return out



class NumbaMaxPool2d(nn.Module):
    """nn.MaxPool2d(2): by max_pool2's loop where it `handles` the input (same values and gradients,
    ~4x faster than aten's; see the top of this module), by F.max_pool2d elsewhere."""

    relu = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if handles(x):
            return max_pool2(x, self.relu)
        return F.max_pool2d(F.relu(x) if self.relu else x, 2)

    def extra_repr(self) -> str:
        return "kernel_size=2, stride=2"


class ReluMaxPool2d(NumbaMaxPool2d):
    """nn.ReLU() then nn.MaxPool2d(2), fused into one pass of the loop: with its backward, ~2x faster
    than the two aten ops (pooling was ~30% of a LeNet step at batch 128)."""

    relu = True
