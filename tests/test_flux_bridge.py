"""What the Flux worker hands to Julia, checked without Julia.

The layout conversions (fluxlenet.backends.flux_layout) are checked by computing, in NumPy, what
Flux computes: the arrays are reinterpreted the way Julia reads memory (column-major), convolved
the way NNlib's `conv` does (a true convolution: the kernel flipped), flattened the way
`Flux.flatten` does, and compared with torch on the original, torch-layout weights.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from fluxlenet import init, julia_env, models, optim_spec
from fluxlenet.backends import flux_layout as fl
from fluxlenet.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
JULIA_SRC = ROOT / "julia" / "src"

torch = pytest.importorskip("torch")
F = torch.nn.functional


# ------------------------------------------------------------------ Flux, in NumPy, on Julia-ordered arrays


def flux_conv(x, w, b, pad):
    """NNlib conv with flipkernel=false on x (W, H, C, N) and w (kW, kH, Cin, Cout): a true convolution."""
    kw, kh = w.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kw, kh), axis=(0, 1))  # (W', H', C, N, kW, kH)
    flipped = w[::-1, ::-1]
    return np.einsum("ijcnpq,pqco->ijon", windows, flipped) + b[None, None, :, None]


def flux_pool(x, k, reduce):
    W, H = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    x = x[:W, :H].reshape(W // k, k, H // k, k, *x.shape[2:])
    return reduce(reduce(x, axis=3), axis=1)


def flux_flatten(x):
    """Flux.flatten: reshape to (features, N) in column-major order."""
    return x.reshape(-1, x.shape[-1], order="F")


ACT = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0),
       "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}


def flux_forward(layers, julia_params, x):
    """The Chain of FluxLeNet.build_model, on (W, H, C, N) input and Julia-ordered parameters."""
    params = iter(julia_params)
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv":
            w, b = next(params), next(params)
            x = ACT[layer["act"]](flux_conv(x, w, b, layer["pad"]))
        elif kind == "dense":
            w, b = next(params), next(params)
            x = ACT[layer["act"]](w @ x + b[:, None])
        elif kind == "maxpool":
            x = flux_pool(x, layer["size"], np.max)
        elif kind == "meanpool":
            x = flux_pool(x, layer["size"], np.mean)
        elif kind == "flatten":
            x = flux_flatten(x)
        elif kind == "dropout":
            pass  # inactive outside a gradient in Flux 0.16
    return x


def torch_forward(layers, params, x_nchw):
    acts = {"identity": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    x = torch.from_numpy(x_nchw)
    params = iter(params)
    for layer in layers:
        kind = layer["kind"]
        if kind == "conv":
            w, b = next(params)
            x = acts[layer["act"]](F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=layer["pad"]))
        elif kind == "dense":
            w, b = next(params)
            x = acts[layer["act"]](F.linear(x, torch.from_numpy(w), torch.from_numpy(b)))
        elif kind == "maxpool":
            x = F.max_pool2d(x, layer["size"])
        elif kind == "meanpool":
            x = F.avg_pool2d(x, layer["size"])
        elif kind == "flatten":
            x = x.flatten(1)
    return x.numpy()


def as_julia(arr: np.ndarray) -> np.ndarray:
    """The array Julia builds from a view we pass: NumPy index order kept, memory copied column-major."""
    return np.asfortranarray(arr)


# ------------------------------------------------------------------ conv kernels and data


@pytest.mark.parametrize("k,cin,cout,pad", [(5, 1, 6, 0), (5, 1, 6, 2), (3, 3, 4, 1), (2, 2, 3, 0), (7, 2, 2, 3)])
def test_conv_kernel_conversion_matches_torch(k, cin, cout, pad):
    rng = np.random.default_rng(k * 100 + cin * 10 + pad)
    wt = rng.standard_normal((cout, cin, k, k))
    bias = rng.standard_normal(cout)
    x = rng.standard_normal((3, cin, 11, 9))  # non-square, to tell W from H
    # the memory Julia will hold, reinterpreted as Julia reads it (column-major)
    w_flux = fl.from_julia_memory(fl.conv_weight_memory(wt), (k, k, cin, cout))
    assert np.array_equal(w_flux, fl.conv_weight_to_flux(wt))  # the view we pass indexes the same
    x_julia = fl.from_julia_memory(x, x.shape[::-1])
    assert np.array_equal(x_julia, fl.julia_view(x))
    got = flux_conv(x_julia, w_flux, bias, pad)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(bias), padding=pad).numpy()
    assert got.shape == want.shape[::-1]
    np.testing.assert_allclose(got, want.transpose(), rtol=1e-12, atol=1e-12)


def test_without_the_flip_it_would_be_wrong():
    rng = np.random.default_rng(0)
    wt, x = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((1, 1, 6, 6))
    unflipped = np.ascontiguousarray(wt).transpose()  # reversed axes, no flip
    got = flux_conv(fl.julia_view(x), unflipped, np.zeros(2), 0)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt)).numpy().transpose()
    assert not np.allclose(got, want)


def test_data_layout_fortran_view_is_julia_whcn():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (N, C, H, W)
    v = fl.julia_view(x)
    assert v.shape == (5, 4, 3, 2) and v.flags.f_contiguous and np.shares_memory(v, x)
    jl = fl.from_julia_memory(x, (5, 4, 3, 2))  # Julia's (W, H, C, N) over the same bytes
    for n, c, h, w in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 3), (1, 0, 3, 1)]:
        assert v[w, h, c, n] == x[n, c, h, w] == jl[w, h, c, n]
    # a non-contiguous input is made contiguous first, so the view is still Julia-ordered
    sliced = x[:, :, ::-1]
    assert np.array_equal(fl.julia_view(sliced), fl.from_julia_memory(np.ascontiguousarray(sliced), (5, 4, 3, 2)))


def test_flatten_order_is_torch_flatten():
    x = np.arange(2 * 16 * 4 * 4, dtype=np.float64).reshape(2, 16, 4, 4)  # (N, C, H, W)
    features = flux_flatten(fl.julia_view(x))  # (256, N)
    np.testing.assert_array_equal(features.T, torch.from_numpy(x).flatten(1).numpy())
    # feature w + 4h + 16c (0-based), as the semantics note says
    assert features[1 + 4 * 2 + 16 * 3, 1] == x[1, 3, 2, 1]


@pytest.mark.parametrize("name", ["lenet5", "lenet5-1998", "lenet-16-32", "cifar-cnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_models_agree_with_torch(name, dtype):
    model = models.get_model(name)
    layers = model["layers"]
    params = init.initial_weights(layers, seed=3, dtype=dtype)
    julia_params = [as_julia(a) for a in fl.flux_params(layers, params)]
    x = np.random.default_rng(1).random((4, *model["input"])).astype(dtype)
    got = flux_forward(layers, julia_params, as_julia(fl.julia_view(x)))  # (10, N)
    want = torch_forward(layers, params, x)  # (N, 10)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got.T, want, rtol=tol, atol=tol)


def test_flux_params_shapes_and_order():
    layers = models.get_model("lenet5")["layers"]
    params = init.initial_weights(layers, seed=0)
    flat = fl.flux_params(layers, params)
    assert [a.shape for a in flat] == [(5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,), (120, 256), (120,),
                                       (84, 120), (84,), (10, 84), (10,)]
    assert flat[0].flags.f_contiguous and flat[4].flags.c_contiguous
    assert all(a.dtype == np.float32 for a in flat)
    assert sum(a.size for a in flat) == models.parameter_count(layers) == 44_426


def test_permutation_matrix_columns_are_the_epoch_permutations():
    p = fl.permutation_matrix(init.epoch_orders(models.MODELS["lenet5"]["layers"], 7, 50), epochs=3, n=50)
    assert p.shape == (50, 3) and p.dtype == np.int32 and p.flags.f_contiguous
    for e in (1, 2, 3):
        np.testing.assert_array_equal(p[:, e - 1], init.epoch_permutation(7, e, 50))
    assert sorted(p[:, 0]) == list(range(50))  # 0-based; Julia adds 1


# ------------------------------------------------------------------ the job document


def julia_sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(JULIA_SRC.glob("*.jl")))


def config(**changes) -> RunConfig:
    base = dict(model="lenet5", optimizer="Adam", eta=3e-4, lambda_=1e-6, epochs=3, steps=None,
                warmup_epochs=0.5, milestones=[2], trace_steps=5)
    return RunConfig(**{**base, **changes}).validate()


def test_job_spec_is_json_and_toml_ready(tmp_path):
    cfg = config()
    job = fl.job_spec(cfg, savepath=str(tmp_path / "run \"x\" ü"), progress=True)
    assert json.loads(json.dumps(job)) == job
    assert tomllib.loads(fl.job_toml(cfg, str(tmp_path / "run \"x\" ü"), progress=True)) == job  # as Julia reads it
    assert job["layers"] == cfg.layers() and job["rules"] == cfg.optimiser_chain()
    assert job["rules"][0] == {"rule": "WeightDecay", "lambda": 1e-6}
    assert "steps" not in job  # no budget: TOML has no null, so the key is absent
    assert tomllib.loads(fl.job_toml(cfg.replace(steps=1000), "runs/x"))["steps"] == 1000


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_round_trips_through_toml(name):
    cfg = RunConfig(model=name, dataset="cifar10" if name == "cifar-cnn" else "mnist").validate()
    assert tomllib.loads(fl.job_toml(cfg, savepath="runs")) == fl.job_spec(cfg, savepath="runs")


def test_job_floats_round_trip_exactly():
    for eta in (3e-4, 1e-8, 1e-16, 0.1, 0.9, 0.999, 123456789.123, 5e-324, 1e300, 2.0 ** -30):
        cfg = config(eta=eta)
        assert tomllib.loads(fl.job_toml(cfg, "runs"))["rules"][1]["eta"] == eta


def test_a_setting_marked_julia_reaches_the_job():
    """The job is built from RunConfig's table: every setting marked `julia` is in it, with its value."""
    cfg = config(steps=7, flush_subnormals=True, precision="float64")
    job = fl.job_spec(cfg, savepath="runs")
    for f in RunConfig.settings(julia=True):
        assert job[f.name] == getattr(cfg, f.name), f.name
    assert not set(job) & {f.name for f in RunConfig.settings(julia=False)}


def test_the_julia_side_reads_every_key_we_write():
    """The job keys Julia knows (JOB_KEYS and RUN_KEYS in julia/src/bridge.jl) are exactly those flux_layout writes."""
    bridge = (JULIA_SRC / "bridge.jl").read_text(encoding="utf-8")
    table = bridge[bridge.index("const JOB_KEYS"):bridge.index("const RUN_KEYS")]
    read = set(re.findall(r'"(\w+)" => \(:', table))
    read |= set(re.findall(r'"(\w+)"', bridge[bridge.index("const RUN_KEYS"):].splitlines()[0]))
    assert read == set(fl.JOB_KEYS)
    # every keyword it makes is a field of Args (train.jl), where the documented defaults live
    fields = set(re.findall(r"^    (\w+) = ", (JULIA_SRC / "train.jl").read_text(encoding="utf-8"), re.M))
    assert set(re.findall(r'=> \(:(\w+),', table)) <= fields
    job = fl.job_spec(config(steps=10, rng="julia"), savepath="runs")
    assert set(job) == set(fl.JOB_KEYS)
    assert job["evalbatch"] == job["batchsize"]  # the post evaluates with its loaders
    assert "evalbatch" not in fl.job_spec(config(), savepath="runs")  # Julia's own default


def test_the_julia_side_knows_every_layer_rule_and_activation():
    src = julia_sources()
    specs = (JULIA_SRC / "specs.jl").read_text(encoding="utf-8")
    layer_table = specs[specs.index("const LAYER_BUILDERS"):specs.index("const WEIGHT_SHAPES")]
    shape_table = specs[specs.index("const WEIGHT_SHAPES"):specs.index("function build_layer")]
    assert set(re.findall(r'^    "(\w+)" =>', layer_table, re.M)) == set(models.LAYER_KINDS)
    assert set(re.findall(r'^    "(\w+)" =>', shape_table, re.M)) == {k for k in models.LAYER_KINDS
                                                                    if models.LAYERS[k].weight_shape}
    for act in models.ACTIVATIONS:
        assert f'"{act}" =>' in src, act
    rule_table = specs[specs.index("const RULE_BUILDERS"):specs.index("function rule_from_spec")]
    rule_names = set(re.findall(r'"(\w+)" => s -> ', rule_table))
    assert rule_names == set(optim_spec.OPTIMISERS) | {"WeightDecay"}
    # every field a rule dict carries is read on the Julia side
    for name in optim_spec.OPTIMISERS:
        for key in optim_spec.make_rule(name, 1e-3, 1e-4).keys() - {"rule"}:
            assert f'"{key}"' in src, (name, key)


def test_the_julia_packages_own_default_model_is_the_posts_lenet5_of_models_py():
    """FluxLeNet.LENET5 is the standalone package's default (`train()` in the zoo's style); Python always hands
    Julia its model as data, so this copy must not drift from models.MODELS["lenet5"]."""
    specs = (JULIA_SRC / "specs.jl").read_text(encoding="utf-8")
    table = specs[specs.index("const LENET5 = ["):specs.index("\n]\n", specs.index("const LENET5 = ["))]
    layers = [dict((key, int(value) if value.isdigit() else value.strip('"'))
                   for key, value in re.findall(r'"(\w+)" => ("\w+"|\d+)', line))
              for line in re.findall(r"layerspec\((.*)\),", table)]
    assert layers == models.MODELS["lenet5"]["layers"]


def test_the_julia_rules_read_every_field_and_default_none():
    """Each rule's builder in specs.jl reads exactly the fields of its row in optim_spec.RULES, with no
    default of its own (the defaults live once, in that table)."""
    src = (JULIA_SRC / "specs.jl").read_text(encoding="utf-8")
    table = src[src.index("const RULE_BUILDERS"):src.index("function rule_from_spec")]
    builders = dict(re.findall(r'"(\w+)" => s -> (.*?)(?=\n    "\w+" => s -> |\n\)\n)', table, re.S))
    assert set(builders) == set(optim_spec.RULES)
    for name, code in builders.items():
        read = set(re.findall(r'rule_(?:number|field)\(s, "(\w+)"\)', code)) | ({"beta"} if "rule_beta(s)" in code else set())
        assert read == set(optim_spec.RULES[name].fields), name
    assert "get(" not in table and "get(" not in src[src.index("function rule_field"):src.index("const RULE_BUILDERS")]


def test_a_schedule_reaches_julia_as_the_factor_of_every_step(monkeypatch, tmp_path):
    """Julia has no schedule formula of its own: it takes RunConfig.lr_factors, the numbers torch takes."""
    from fluxlenet.runlog import RunLog
    assert "warmup" not in julia_sources() and "milestones" not in julia_sources()
    cfg = RunConfig(backend="flux", epochs=3, batchsize=16, warmup_epochs=1.5, milestones=[2], gamma=0.5).validate()
    factors = cfg.lr_factors(40)  # 3 steps an epoch
    assert factors == [1 / 4.5, 2 / 4.5, 3 / 4.5, 4 / 4.5, 1.0, 1.0, 0.5, 0.5, 0.5]
    assert factors == [optim_spec.lr_factor(s, 3, 1.5, [2], 0.5) for s in range(9)]
    julia = _StandInJulia()
    _load_flux_backend(monkeypatch, julia).train(cfg, _tiny_dataset(), RunLog(tmp_path, echo=lambda line: None))
    assert julia.lr_factors.dtype == np.float64 and julia.lr_factors.tolist() == factors
    assert RunConfig(epochs=3).lr_factors(40) is None
    julia = _StandInJulia()
    _load_flux_backend(monkeypatch, julia).train(RunConfig(backend="flux", epochs=1).validate(), _tiny_dataset(),
                                                 RunLog(tmp_path / "plain", echo=lambda line: None))
    assert julia.lr_factors is None


# ------------------------------------------------------------------ packaging of the Julia side


def test_declared_julia_packages_agree():
    """fluxlenet/juliapkg.json and julia/Project.toml name the same packages with the same UUIDs."""
    pkg = json.loads((ROOT / "fluxlenet" / "juliapkg.json").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "julia" / "Project.toml").read_text(encoding="utf-8"))
    ours = pkg["packages"].pop("FluxLeNet")  # the package itself, developed from its path so Pkg precompiles it
    assert ours["dev"] is True and ours["uuid"] == project["uuid"]
    # juliapkg reads the path relative to the json file: fluxlenet/julia (a link to julia/ in a checkout,
    # the folder itself in a wheel)
    folder = (ROOT / "fluxlenet" / ours["path"]).resolve()
    assert folder == (ROOT / "julia").resolve() and (folder / "src" / "FluxLeNet.jl").is_file()
    assert {k: v["uuid"] for k, v in pkg["packages"].items()} == project["deps"]
    for name, entry in pkg["packages"].items():
        if "version" in entry:
            assert entry["version"] == project["compat"][name], name
    assert pkg["julia"] == project["compat"]["julia"] == "~1.10"
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert uuid.match(project["uuid"]) and project["name"] == "FluxLeNet"
    assert project["compat"]["Flux"] == "0.16" and project["compat"]["Optimisers"] == "0.4"


def test_julia_sources_are_found():
    assert julia_env.julia_source_file() == ROOT / "julia" / "src" / "FluxLeNet.jl"


def test_flux_backend_imports_juliacall_first():
    tree = ast.parse((ROOT / "fluxlenet" / "backends" / "flux.py").read_text(encoding="utf-8"))
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    first = imports[0]
    assert isinstance(first, ast.Import) and [a.name for a in first.names] == ["juliacall"]
    assert tree.body.index(first) <= 1  # after the docstring, before anything else


# ------------------------------------------------------------------ julia_env, without Julia


def test_julia_status_is_fast_and_says_what_to_do():
    started = time.perf_counter()
    ready, reason = julia_env.julia_status()
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"julia_status took {elapsed:.2f} s"
    assert isinstance(ready, bool) and reason
    if not ready:
        assert "Julia" in reason and "python -m fluxlenet setup-julia" in reason


def test_imports_that_must_not_load_julia():
    code = ("import sys\n"
            "import fluxlenet.cli, fluxlenet.worker, fluxlenet.backends.flux_layout, fluxlenet.julia_env\n"
            "fluxlenet.julia_env.julia_status()\n"
            "bad = [m for m in ('juliacall', 'torch') if m in sys.modules]\n"
            "print('LOADED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


def test_setup_julia_fails_fast_without_network(monkeypatch):
    ready, _ = julia_env.julia_status()
    if ready:
        pytest.skip("Julia is set up here; the offline failure path is for machines without it")
    monkeypatch.setattr(julia_env, "_find_julia", lambda compat, state: None)
    monkeypatch.setattr(julia_env, "network_reachable", lambda *a, **k: (False, "pkg.julialang.org: unreachable"))
    calls = []
    monkeypatch.setattr(julia_env.subprocess, "run", lambda *a, **k: calls.append(a))
    said = []
    started = time.perf_counter()
    with pytest.raises(julia_env.JuliaSetupError, match=r"no network.*Julia.*setup-julia"):
        julia_env.setup_julia(echo=said.append)
    assert time.perf_counter() - started < 5 and not calls  # nothing started, nothing downloaded
    assert any("Flux 0.16" in line for line in said)  # it said what it would fetch


def test_network_probe_is_bounded():
    started = time.perf_counter()
    ok, why = julia_env.network_reachable(hosts=("invalid.invalid",), timeout_s=1.0)
    assert time.perf_counter() - started < 3.5
    assert not ok and why


def test_julia_status_asks_juliapkgs_public_api(monkeypatch, tmp_path):
    """Ready when juliapkg says the environment is resolved (resolve(dry_run=True)) and its manifest holds
    Flux and friends; the Julia and project are juliapkg.executable() and juliapkg.project()."""
    import juliapkg
    monkeypatch.delenv("PYTHON_JULIACALL_EXE", raising=False)
    monkeypatch.delenv("PYTHON_JULIACALL_PROJECT", raising=False)
    env = tmp_path / "julia_env"
    env.mkdir()
    packages = "".join(f'[[deps.{name}]]\nuuid = "00000000-0000-0000-0000-00000000000{i}"\nversion = "1.0.{i}"\n\n'
                       for i, name in enumerate(("Flux", "Optimisers", "BSON", "ProgressMeter")))
    (env / "Manifest.toml").write_text(f'julia_version = "1.10.8"\nmanifest_format = "2.0"\n\n{packages}')
    resolved = {"now": True}
    asked = []

    def resolve(force=False, dry_run=False, **kwargs):
        asked.append(dry_run)
        assert dry_run, "julia_status must not resolve for real (that downloads)"
        return resolved["now"]
    monkeypatch.setattr(juliapkg, "resolve", resolve)
    monkeypatch.setattr(juliapkg, "project", lambda: str(env))
    monkeypatch.setattr(juliapkg, "executable", lambda: "/opt/julia-1.10.8/bin/julia")
    monkeypatch.setattr(julia_env, "_find_julia", lambda compat, state: ("/opt/julia-1.10.8/bin/julia", "1.10.8"))
    ready, reason = julia_env.julia_status()
    assert ready and asked == [True]
    assert reason == "Julia 1.10.8 with Flux 0.16, Optimisers 0.4, BSON 0.3, ProgressMeter 1 is set up " \
                     "(/opt/julia-1.10.8/bin/julia)"
    resolved["now"] = False  # a dependency file changed since: juliapkg would resolve again
    from juliapkg.state import STATE
    monkeypatch.setitem(STATE, "project", str(env))
    ready, reason = julia_env.julia_status()
    assert not ready and f"({env}) is out of date: run `python -m fluxlenet setup-julia`" in reason
    (env / "Manifest.toml").write_text('julia_version = "1.10.8"\nmanifest_format = "2.0"\n')
    ready, reason = julia_env.julia_status()
    assert not ready and "are not set up: run `python -m fluxlenet setup-julia` once" in reason


def test_doctor_lines_without_julia():
    lines = julia_env.doctor_lines()
    text = "\n".join(lines)
    assert lines[0].startswith("Python ") and "numpy" in text and "juliacall" in text
    ready, reason = julia_env.julia_status()
    if not ready:
        assert f"Julia: not available: {reason}" in lines


# ------------------------------------------------------------------ the Python glue, with Julia stood in for


class _StandInJulia:
    """Plays FluxLeNet.run_job's part: checks what it is handed, then drives the callbacks as Julia does."""

    class JuliaError(Exception):
        def __init__(self, exception):
            super().__init__(exception)
            self.exception = exception

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls = []
        self.Main = self
        self.FluxLeNet = self

    # juliacall.Main
    def include(self, path):
        assert path.endswith("FluxLeNet.jl")

    def seval(self, code):
        return {"using FluxLeNet": None, "Main.FluxLeNet": self, "Main.FluxLeNet.set_threads!": lambda n: (1, n)}[code]

    def sprint(self, f, exception):
        return f"ArgumentError: {exception}\nStacktrace:\n [1] somewhere"

    showerror = object()

    # FluxLeNet
    def versions(self):
        return ("1.10.5", "0.16.10", "0.4.8", "0.3.9")

    def run_job(self, job, *weights, xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations, lr_factors,
                report, say, started, saved, trace, poll):
        spec = tomllib.loads(job)
        self.calls.append((spec, xtrain, ytrain, xtest, permutations, weights))
        self.lr_factors = lr_factors
        if self.fail:
            raise self.JuliaError("unknown activation \"swish\"")
        started(0)
        report(0, 2.30259, 9.87654321, 2.3, 10.0, None, None, None, 3e-4)
        for step in range(1, spec["trace_steps"] + 1):
            trace(step, 2.3 - step / 100, 1.5)
        poll()
        report(1, 0.5, 90.12345, float("nan"), 80.0, None, None, 1.25, 3e-4)
        return "diverged"


def _load_flux_backend(monkeypatch, julia):
    import importlib
    fake = type(sys)("juliacall")
    fake.Main, fake.JuliaError, fake.__version__ = julia, julia.JuliaError, "0.9.37"
    monkeypatch.setitem(sys.modules, "juliacall", fake)
    monkeypatch.delitem(sys.modules, "fluxlenet.backends.flux", raising=False)
    module = importlib.import_module("fluxlenet.backends.flux")
    monkeypatch.delitem(sys.modules, "fluxlenet.backends.flux")  # the next import is a fresh one
    return module


def _tiny_dataset(n=40, ntest=16):
    from fluxlenet.data import Dataset
    rng = np.random.default_rng(0)
    return Dataset(rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n),
                   rng.random((ntest, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, ntest))


def test_flux_backend_glue_with_a_stand_in_julia(monkeypatch, tmp_path):
    from fluxlenet.runlog import RunFolder, RunLog
    julia = _StandInJulia()
    flux = _load_flux_backend(monkeypatch, julia)
    cfg = RunConfig(backend="flux", epochs=2, batchsize=16, trace_steps=3, threads=2, seed=5).validate()
    log = RunLog(tmp_path, echo=lambda line: None)
    assert flux.versions(cfg)["Flux"] == "0.16.10" and flux.device_name(cfg) == "cpu: Julia 1 thread, BLAS 2 threads"
    assert flux.train(cfg, _tiny_dataset(), log) == "diverged"

    spec, xtrain, ytrain, xtest, perms, weights = julia.calls[0]
    assert spec["savepath"] == str(tmp_path) and spec["mode"] == "lockstep" and spec["rules"] == cfg.optimiser_chain()
    assert xtrain.shape == (28, 28, 1, 40) and xtrain.flags.f_contiguous and ytrain.dtype == np.int64
    assert perms.shape == (40, cfg.total_epochs(40)) and len(weights) == 10
    np.testing.assert_array_equal(weights[0], fl.conv_weight_to_flux(init.initial_weights(cfg.layers(), 5)[0][0]))
    rows = RunFolder(tmp_path).read_log_rows()
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0]["train_acc"] == 9.8765 and rows[1]["status"] == "diverged"
    assert rows[1]["seconds"] == 1.25 and rows[0]["lr"] == 3e-4
    console = (tmp_path / "console.log").read_text().splitlines()
    assert console[0] == "Epoch: 0   Train: (loss = 2.3026, acc = 9.8765)   Test: (loss = 2.3, acc = 10.0)"
    trace = (tmp_path / "trace.csv").read_text().splitlines()
    assert trace[0] == "step,loss,checksum" and len(trace) == 4 and trace[1].startswith("1,2.29,")


def test_flux_backend_native_mode_hands_no_lockstep_inputs(monkeypatch, tmp_path):
    from fluxlenet.runlog import RunLog
    julia = _StandInJulia()
    flux = _load_flux_backend(monkeypatch, julia)
    cfg = RunConfig(backend="flux", mode="native", precision="float64", epochs=1).validate()
    flux.train(cfg, _tiny_dataset(), RunLog(tmp_path, echo=lambda line: None))
    spec, _, _, _, perms, weights = julia.calls[0]
    assert perms is None and weights == () and spec["precision"] == "float64"


def test_a_julia_error_becomes_one_readable_line(monkeypatch, tmp_path):
    from fluxlenet.runlog import RunLog
    flux = _load_flux_backend(monkeypatch, _StandInJulia(fail=True))
    cfg = RunConfig(backend="flux", epochs=1).validate()
    with pytest.raises(flux.FluxError, match=r'^Julia: ArgumentError: unknown activation "swish"$'):
        flux.train(cfg, _tiny_dataset(), RunLog(tmp_path, echo=lambda line: None))
    with pytest.raises(flux.FluxError, match="CPU only"):
        flux.device_name(cfg.replace(device="cuda"))


class _CheckpointingJulia(_StandInJulia):
    """Reports epochs 0 and 1, then saves a checkpoint, as the post's loop does with checktime = 1."""

    def run_job(self, job, *weights, xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations, lr_factors,
                report, say, started, saved, trace, poll):
        self.calls.append(job)
        started(0)
        report(0, 2.3, 10.0, 2.3, 10.0, None, None, None, 3e-4)
        report(1, 0.5, 90.0, 0.6, 85.0, None, None, 1.0, 3e-4)
        say('Model saved in "model.bson"')
        saved(1)
        return "finished"


def test_fault_points_reach_flux_runs(monkeypatch, tmp_path):
    """The robustness hooks (fluxlenet.faults) fire in Flux runs too: after an epoch's report and after
    its checkpoint, so the Julia-marked kill/resume test can stop a Flux run at an exact point."""
    from fluxlenet import faults
    from fluxlenet.runlog import RunLog
    flux = _load_flux_backend(monkeypatch, _CheckpointingJulia())
    cfg = RunConfig(backend="flux", epochs=1, run="A").validate()
    for point in ("epoch1", "checkpoint1"):
        monkeypatch.setattr(faults, "RULES", [("A", "raise", point)])
        with pytest.raises(RuntimeError, match=f"fault injected by FLUXLENET_FAULT at {point}"):
            flux.train(cfg, _tiny_dataset(), RunLog(tmp_path / point, echo=lambda line: None))
    monkeypatch.setattr(faults, "RULES", [("B", "raise", "checkpoint1")])  # another run's rule
    assert flux.train(cfg, _tiny_dataset(), RunLog(tmp_path / "other", echo=lambda line: None)) == "finished"


class _PostLoopJulia(_StandInJulia):
    """Drives the callbacks in the order of the post's loop (julia/src/train.jl) for the job's epochs,
    infotime and checktime: a report every infotime epochs and at the last, then a checkpoint every
    checktime epochs and at the last. Starts at `start` (a resume, when > 0)."""

    def __init__(self, start: int = 0):
        super().__init__()
        self.start = start

    def run_job(self, job, *weights, xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations, lr_factors,
                report, say, started, saved, trace, poll):
        spec = tomllib.loads(job)
        total, infotime, checktime = spec["epochs"], spec["infotime"], spec["checktime"]
        started(self.start)
        if self.start == 0:
            report(0, 2.3, 10.0, 2.3, 10.0, None, None, None, 3e-4)
        for epoch in range(self.start + 1, total + 1):
            if epoch % infotime == 0 or epoch == total:
                report(epoch, 2.3 - epoch / 10, 10.0, 2.3, 10.0, None, None, 1.0, 3e-4)
            if checktime > 0 and (epoch % checktime == 0 or epoch == total):
                say('Model saved in "model.bson"')
                saved(epoch)
        return "finished"


@pytest.mark.parametrize("start", [0, 1])
def test_a_flux_checkpoint_point_names_the_epoch_saved_also_without_its_report(monkeypatch, tmp_path, start):
    """checkpointN means epoch N's checkpoint in Flux runs as in torch runs, also for epochs that are not
    reported (infotime 2: epoch 1 has a checkpoint but no report) and in a resumed run."""
    from fluxlenet import faults
    from fluxlenet.runlog import RunFolder, RunLog
    flux = _load_flux_backend(monkeypatch, _PostLoopJulia(start))
    cfg = RunConfig(backend="flux", run="A", epochs=4, infotime=2, checktime=1).validate()
    for epoch in range(start + 1, 5):
        monkeypatch.setattr(faults, "RULES", [("A", "raise", f"checkpoint{epoch}")])
        folder = tmp_path / f"{start}-{epoch}"
        with pytest.raises(RuntimeError, match=f"fault injected by FLUXLENET_FAULT at checkpoint{epoch}$"):
            flux.train(cfg, _tiny_dataset(), RunLog(folder, echo=lambda line: None))
        reported = [r["epoch"] for r in RunFolder(folder).read_log_rows()]  # fired after the epoch's report, if any
        assert reported == [e for e in range(epoch + 1) if e % 2 == 0 and (start == 0 or e > start)]
        assert (folder / "console.log").read_text().count("Model saved in") == epoch - start


# ------------------------------------------------------------------ NaN in the data: refused by both backends


def _with_nan(split: str):
    ds = _tiny_dataset()
    getattr(ds, f"{split}_x")[3, 0, 5, 7] = np.nan
    return ds


def test_nan_images_are_refused_before_training():
    from fluxlenet.data import DataError
    with pytest.raises(DataError, match=r"^the training images hold 1 NaN or infinite value \(the first in sample 3\)"):
        _with_nan("train").check_finite()
    ds = _with_nan("test")
    ds.test_x[5] = np.inf
    with pytest.raises(DataError, match=r"^the test images hold 785 NaN or infinite values \(the first in sample 3\)"):
        ds.check_finite()
    _tiny_dataset().check_finite()  # finite data passes


def test_both_backends_refuse_nan_images_in_the_same_words(monkeypatch, tmp_path):
    """NNlib's max pooling drops a NaN that torch's propagates: fed NaN, Flux would report a finite
    epoch 0 and PyTorch a NaN one. Both refuse such data instead, before any training."""
    from fluxlenet.backends import torch_backend
    from fluxlenet.data import DataError
    from fluxlenet.runlog import RunLog
    julia = _StandInJulia()
    flux = _load_flux_backend(monkeypatch, julia)
    messages = []
    for name, backend in (("flux", flux), ("torch", torch_backend)):
        cfg = RunConfig(backend=name, epochs=1, batchsize=16).validate()
        log = RunLog(tmp_path / name, echo=lambda line: None)
        with pytest.raises(DataError) as info:
            backend.train(cfg, _with_nan("train"), log)
        messages.append(str(info.value))
        assert not (tmp_path / name / "log.csv").exists() or not (tmp_path / name / "log.csv").read_text().strip()
    assert messages[0] == messages[1] and "NaN or infinite" in messages[0]
    assert julia.calls == []  # Julia was never asked to train


# ------------------------------------------------------------------ how Julia starts, and which PythonCall


def test_juliacall_starts_julia_with_the_runs_threads_and_signal_handling(monkeypatch):
    monkeypatch.delenv("PYTHON_JULIACALL_THREADS", raising=False)
    monkeypatch.delenv("PYTHON_JULIACALL_HANDLE_SIGNALS", raising=False)
    julia_env.juliacall_environment(3)
    assert os.environ["PYTHON_JULIACALL_THREADS"] == "3"
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"  # required with more than one Julia thread


def test_the_worker_sets_julias_threads_before_importing_juliacall():
    source = (ROOT / "fluxlenet" / "worker.py").read_text(encoding="utf-8")
    start = source[source.index("def _start_process"):source.index("def _dataset")]
    assert "juliacall_environment(" in start
    for entry in ("def worker_main", "def serve"):  # each process starts so, before any run imports a backend
        body = source[source.index(entry):]
        assert body.index("_start_process(") < body.index("run_one(")
    assert "threads=impl.threads_used(cfg)" in source  # recorded in config.json


def _project_with_pythoncall(folder: Path, version: str, manifest_format: str = "2.0") -> Path:
    folder.mkdir(parents=True)
    (folder / "Project.toml").write_text('[deps]\nPythonCall = "6099a3de-0909-46bc-b1f4-468b9a2dfc0d"\n')
    entry = f'uuid = "6099a3de-0909-46bc-b1f4-468b9a2dfc0d"\nversion = "{version}"\n'
    if manifest_format == "2.0":
        text = f'julia_version = "1.10.8"\nmanifest_format = "2.0"\n\n[[deps.PythonCall]]\n{entry}'
        (folder / "Manifest.toml").write_text(text)
    else:
        (folder / "Manifest.toml").write_text(f"[[PythonCall]]\n{entry}")
    return folder


def test_a_julia_project_with_another_pythoncall_is_named_with_the_fix(monkeypatch, tmp_path):
    wanted = julia_env.pythoncall_wanted()
    assert wanted and wanted[0].isdigit()  # read from the installed juliacall's juliapkg.json
    old = _project_with_pythoncall(tmp_path / "old", "0.9.34")
    assert julia_env.manifest_version(old, "PythonCall") == "0.9.34"
    legacy = _project_with_pythoncall(tmp_path / "legacy", "0.9.20", manifest_format="1.0")
    assert julia_env.manifest_version(legacy, "PythonCall") == "0.9.20"
    assert julia_env.pythoncall_mismatch(_project_with_pythoncall(tmp_path / "same", wanted)) is None

    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/opt/julia-1.10.8/bin/julia")
    monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(old))
    ready, reason = julia_env.julia_status()
    assert not ready
    assert f"needs PythonCall.jl {wanted}" in reason and "has PythonCall 0.9.34" in reason
    assert "pip install 'juliacall==0.9.34'" in reason and "\n" not in reason
    lines = julia_env.doctor_lines()
    assert f"Julia: not available: {reason}" in lines
    monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(tmp_path / "same"))
    assert julia_env.julia_status()[0]


class _JuliaWithoutThePackage(_StandInJulia):
    """A Julia project that lacks FluxLeNet (a project of the user's own): `using` fails."""

    def __init__(self):
        super().__init__()
        self.included = []

    def seval(self, code):
        if code == "using FluxLeNet":
            raise self.JuliaError("ArgumentError: Package FluxLeNet not found in current path")
        return super().seval(code)

    def include(self, path):
        self.included.append(path)


def test_flux_loads_from_sources_where_the_project_lacks_the_package(monkeypatch, capsys):
    julia = _JuliaWithoutThePackage()
    flux = _load_flux_backend(monkeypatch, julia)
    assert flux.fluxlenet_module() is julia
    assert julia.included == [str(julia_env.julia_source_file())]
    assert "`using FluxLeNet` failed" in capsys.readouterr().err
