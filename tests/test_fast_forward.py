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
