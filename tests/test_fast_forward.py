"""The torch backend's models fuse ReLU + 2x2 max pooling into one module (torch_pool's numba loop):
they compute what the plain models (torch's own modules) compute, bit for bit, and show it."""

import subprocess
import sys

import pytest
import torch

from fluxlenet import init, models
from fluxlenet.backends.torch_backend import build_model, load_weights
from fluxlenet.backends.torch_pool import NumbaMaxPool2d, ReluMaxPool2d


def plain_and_fused(name, dtype):
    layers = models.MODELS[name]["layers"]
    pair = []
    for fuse in (False, True):
        model = build_model(layers, fuse_pooling=fuse).to(dtype)
        load_weights(model, init.initial_weights(layers, 1))
        pair.append(model)
    return pair


@pytest.mark.parametrize("name", ["lenet5", "lenet5-1998", "lenet-add-conv", "lenet-sigmoid", "cifar-cnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_values_and_same_gradients_as_the_plain_model(name, dtype):
    spec = models.MODELS[name]
    plain, fused = plain_and_fused(name, dtype)
    x = torch.rand(16, *spec["input"], dtype=dtype)
    x[0, 0, :4, :4] = 0.5  # ties inside pooling windows: the gradient goes to the first maximum
    y = torch.randint(0, 10, (16,))
    results = []
    for model in (plain, fused):
        model.eval()  # dropout off: both must see the same network
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    (out_a, g_a), (out_b, g_b) = results
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b):
        assert torch.equal(a, b)
    with torch.inference_mode():
        assert torch.equal(plain(x), fused(x))


def test_the_fused_module_is_in_the_model_and_the_parameter_names_are_kept():
    layers = models.MODELS["lenet5"]["layers"]
    fused, plain = build_model(layers), build_model(layers, fuse_pooling=False)
    assert [type(m) for m in fused] == [torch.nn.Conv2d, ReluMaxPool2d, torch.nn.Conv2d, ReluMaxPool2d,
                                        torch.nn.Flatten, torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear,
                                        torch.nn.ReLU, torch.nn.Linear]
    # model.pt's keys: those of the plain Sequential, as before the fused module existed
    keys = [f"{i}.{w}" for i in (0, 3, 7, 9, 11) for w in ("weight", "bias")]
    assert list(fused.state_dict()) == list(plain.state_dict()) == keys
    sigmoid = build_model(models.MODELS["lenet-sigmoid"]["layers"])
    assert sum(isinstance(m, NumbaMaxPool2d) and not isinstance(m, ReluMaxPool2d) for m in sigmoid) == 2


def test_print_model_shows_the_fused_module():
    code = ("from fluxlenet.backends.torch_backend import build_model\n"
            "from fluxlenet.models import MODELS\n"
            "print(build_model(MODELS['lenet5']['layers']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(1-2): ReluMaxPool2d(kernel_size=2, stride=2)" in out.stdout
    assert "(4-5): ReluMaxPool2d(kernel_size=2, stride=2)" in out.stdout
    assert "MaxPool2d(kernel_size=2, stride=2, padding=0" not in out.stdout  # no aten pooling left


def test_flushing_subnormals_reaches_torchs_threads():
    # The torch backend sets FTZ/DAZ before its first parallel op: the thread pool then inherits
    # the (per-thread) flag, and a product that would be subnormal is zero on every thread.
    code = ("import sys, torch\n"
            "torch.set_flush_denormal(sys.argv[1] == 'on'); torch.set_num_threads(2)\n"
            "y = torch.full((1 << 20,), 1e-30) * 1e-10\n"
            "print(int((y != 0).sum()))")
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


def test_dtypes_the_loop_does_not_take_go_through_torchs_ops():
    plain, fused = plain_and_fused("lenet5", torch.bfloat16)
    x = torch.rand(4, 1, 28, 28, dtype=torch.bfloat16)
    assert torch.equal(plain(x), fused(x))
