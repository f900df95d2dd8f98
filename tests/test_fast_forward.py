"""The torch backend's faster forward (ReLU + 2x2 max pool fused) computes what the model computes."""

import pytest
import torch

from fluxlenet import init, models
from fluxlenet.backends.torch_backend import build_model, fast_forward, load_weights


@pytest.mark.parametrize("name", ["lenet5", "lenet5-1998", "lenet-add-conv", "cifar-cnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_values_and_same_gradients_as_the_model(name, dtype):
    spec = models.MODELS[name]
    model = build_model(spec["layers"]).to(dtype)
    load_weights(model, init.initial_weights(spec["layers"], 1))
    model.to(dtype).eval()  # dropout off: both paths must see the same network
    x = torch.rand(16, *spec["input"], dtype=dtype)
    x[0, 0, :4, :4] = 0.5  # ties inside pooling windows: the gradient goes to the first maximum
    y = torch.randint(0, 10, (16,))
    grads = []
    for forward in (model, fast_forward(model)):
        model.zero_grad()
        out = forward(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_a, g_a), (out_b, g_b) = grads
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b):
        assert torch.equal(a, b)
    with torch.inference_mode():
        assert torch.equal(model(x), fast_forward(model)(x))


def test_flushing_subnormals_reaches_torchs_threads():
    # The torch backend sets FTZ/DAZ before its first parallel op: the thread pool then inherits
    # the (per-thread) flag, and a product that would be subnormal is zero on every thread.
    code = ("import sys, torch\n"
            "torch.set_flush_denormal(sys.argv[1] == 'on'); torch.set_num_threads(2)\n"
            "y = torch.full((1 << 20,), 1e-30) * 1e-10\n"
            "print(int((y != 0).sum()))")
    import subprocess
    import sys
    on = subprocess.run([sys.executable, "-c", code, "on"], capture_output=True, text=True, timeout=120)
    off = subprocess.run([sys.executable, "-c", code, "off"], capture_output=True, text=True, timeout=120)
    assert (on.stdout.strip(), off.stdout.strip()) == ("0", str(1 << 20)), (on.stderr, off.stderr)


@pytest.mark.parametrize("relu", [True, False], ids=["relu-pool", "pool"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(8, 6, 24, 24), (3, 2, 7, 9)], ids=["even", "odd"])
def test_pooling_loop_is_atens_pooling_bit_for_bit(relu, dtype, shape):
    # aten's rules at their edges: ties go to the first element in scan order, NaN takes over
    # (the last NaN of a window), +-inf, -0.0; odd sizes drop the last row and column.
    from fluxlenet.backends.torch_pool import max_pool2
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-3, 4, shape, generator=g).to(dtype)  # small integers: many ties, many windows <= 0
    x[0, 0, 0, 1] = x[1, 1, 2, 2] = x[1, 1, 3, 3] = float("nan")
    x[0, 1, 0, 0], x[0, 1, 1, 1], x[2, 0, 4, 4] = float("inf"), float("-inf"), -0.0
    x.requires_grad_(True)
    pooled = []
    for pool in (lambda t: torch.nn.functional.max_pool2d(torch.relu(t) if relu else t, 2),
                 lambda t: max_pool2(t, relu)):
        out = pool(x)
        out.backward(torch.arange(out.numel(), dtype=dtype).view_as(out) + 1)
        pooled.append((out.detach(), x.grad))
        x.grad = None
    with torch.inference_mode():  # the loop without the places of the maxima
        pooled.append((max_pool2(x, relu), None))
    (out_a, grad_a), (out_b, grad_b), (out_c, _) = pooled
    for out in (out_b, out_c):
        assert torch.equal(out_a.isnan(), out.isnan()) and torch.equal(out_a.nan_to_num(), out.nan_to_num())
        assert torch.equal(out_a.signbit(), out.signbit())
    assert torch.equal(grad_a, grad_b)
    assert grad_b[0, 0, 0, 1] != 0  # the NaN took the window's gradient, with relu too (NaN > 0 is false, NaN <= 0 too)


def test_dtypes_the_loop_does_not_take_go_through_the_modules():
    model = build_model(models.MODELS["lenet5"]["layers"]).to(torch.bfloat16)
    x = torch.rand(4, 1, 28, 28, dtype=torch.bfloat16)
    assert torch.equal(model(x), fast_forward(model)(x))
