"""ChainOptimiser's flat path (parameters in one buffer, see flatten_parameters) is a speed-up only:
it must give the very same bits as the per-parameter path, step after step, and resume the same."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fluxlenet.backends.torch_optim import ChainOptimiser, flatten_parameters

from test_optim import _one_thread  # noqa: F401  (autouse: these tensors are tiny too)
from test_optim import CASES, SCHEDULE, STEPS, make_problem, set_grads, torch_params


def flat_params(xs):
    params = torch_params(xs)
    flat = flatten_parameters(params)
    return params, flat


def assert_same(pa, pb):
    for a, b in zip(pa, pb):
        assert torch.equal(a, b), float((a - b).abs().max())


def assert_same_state(oa, pa, ob, pb):
    for a, b in zip(pa, pb):
        sa, sb = oa.state[a], ob.state[b]
        assert sa.keys() == sb.keys()
        for k in sa:
            if torch.is_tensor(sa[k]):
                assert torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype, k
            else:
                assert sa[k] == sb[k], k


def side_by_side(chain, T, factors=None, before_step=None):
    """The per-parameter path ("slow") and the flat path ("fast") over the same gradients, compared
    after every step; `before_step(t, side, params)` may change a side's parameters or gradients."""
    xs, grads = make_problem(T)
    slow = torch_params(xs)
    fast, _ = flat_params(xs)
    o_slow, o_fast = ChainOptimiser(slow, chain), ChainOptimiser(fast, chain)
    for t, g in enumerate(grads):
        for side, o, ps in (("slow", o_slow, slow), ("fast", o_fast, fast)):
            if factors is not None:
                o.set_lr_factor(factors[t])
            set_grads(ps, g)
            if before_step is not None:
                before_step(t, side, ps)
            o.step()
        assert_same(slow, fast)
    return o_slow, slow, o_fast, fast


def test_flatten_keeps_values_and_makes_views():
    xs, _ = make_problem(np.float32, steps=1)
    params, flat = flat_params(xs)
    assert flat.numel() == sum(x.size for x in xs)
    for p, x in zip(params, xs):
        assert p.is_leaf and p.requires_grad and p.shape == x.shape
        assert np.array_equal(p.detach().numpy(), x)
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()


@pytest.mark.parametrize("T", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_flat_path_is_bitwise_the_per_parameter_path(case, T):
    o_slow, slow, o_fast, fast = side_by_side(CASES[case], T, factors=SCHEDULE)
    assert o_fast.__dict__.get("_flat_plans"), "the flat path was not taken"
    assert not o_slow.__dict__.get("_flat_plans")
    assert_same_state(o_slow, slow, o_fast, fast)


@pytest.mark.parametrize("T", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", ["WD+Adam", "Momentum", "NAdam", "AdaBelief", "WD+AdaBelief_flux012"])
@pytest.mark.parametrize("resume_flat", [True, False], ids=["into-flat", "into-separate"])
def test_flat_state_dict_resumes_identically(case, T, resume_flat):
    chain = CASES[case]
    xs, grads = make_problem(T)
    params, _ = flat_params(xs)
    opt = ChainOptimiser(params, chain)
    for t in range(8):
        set_grads(params, grads[t])
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": [p.detach() for p in params], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    params2 = torch_params([x.numpy() for x in saved["model"]])
    if resume_flat:
        flatten_parameters(params2)
    opt2 = ChainOptimiser(params2, [{"rule": "Descent"}])
    opt2.load_state_dict(saved["opt"])
    for t in range(8, STEPS):
        for o, ps in ((opt, params), (opt2, params2)):
            set_grads(ps, grads[t])
            o.step()
        assert_same(params, params2)
    assert_same_state(opt, params, opt2, params2)
    assert bool(opt2.__dict__.get("_flat_plans")) == resume_flat


def test_missing_grad_falls_back_then_goes_flat():
    # a parameter without a gradient is skipped (own beta^t later): the flat path steps aside
    def no_grad_at_first(t, side, ps):
        if t < 3:
            ps[-1].grad = None
    o_slow, slow, o_fast, fast = side_by_side(CASES["WD+NAdam"], np.float32, before_step=no_grad_at_first)
    assert_same_state(o_slow, slow, o_fast, fast)


def test_moved_parameter_leaves_the_flat_path():
    def move(t, side, ps):
        if t == 5 and side == "fast":
            ps[2].data = ps[2].data.clone()  # no longer a view of the buffer
    side_by_side(CASES["WD+Adam"], np.float64, before_step=move)


def test_grad_missing_after_flat_steps_keeps_beta_t_per_parameter():
    # flat steps, then one step where a parameter has no gradient (its beta^t stays behind), then
    # all gradients again: the flat path must not step that parameter with the others' beta^t
    def no_grad_once(t, side, ps):
        if t == 4:
            ps[1].grad = None
    o_slow, slow, o_fast, fast = side_by_side(CASES["WD+NAdam"], np.float64, before_step=no_grad_once)
    assert_same_state(o_slow, slow, o_fast, fast)
    assert o_fast.state[fast[1]]["1.beta_t"] != o_fast.state[fast[0]]["1.beta_t"]


def test_zero_grad():
    xs, grads = make_problem(np.float32, steps=1)
    params, _ = flat_params(xs)
    opt = ChainOptimiser(params, CASES["Adam"])
    set_grads(params, grads[0])
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
