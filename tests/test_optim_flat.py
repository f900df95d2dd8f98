"""ChainOptimiser keeps each param group's parameters and state in one buffer (one tensor op per
operation of a rule): the parameters become views of it with their values, the state does too,
also when it comes back from a checkpoint, and a parameter moved out of the buffer is refused.
(That its steps are Optimisers.jl's to the bit: tests/test_optim.py.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fluxlenet.backends.torch_optim import ChainOptimiser

from test_optim import _one_thread  # noqa: F401  (autouse: these tensors are tiny too)
from test_optim import CASES, STEPS, make_problem, set_grads, torch_params


def one_storage(tensors) -> bool:
    return len({t.untyped_storage().data_ptr() for t in tensors}) == 1


def test_parameters_become_views_of_one_buffer_with_their_values():
    xs, _ = make_problem(np.float32, steps=1)
    params = torch_params(xs)
    ChainOptimiser(params, CASES["Adam"])
    assert one_storage(params)
    assert params[0].untyped_storage().nbytes() == 4 * sum(x.size for x in xs)  # float32: 4 bytes each
    for p, x in zip(params, xs):
        assert p.is_leaf and p.requires_grad and p.shape == x.shape
        assert np.array_equal(p.detach().numpy(), x)


@pytest.mark.parametrize("T", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", ["WD+Adam", "Momentum", "NAdam", "AdaBelief", "WD+AdaBelief_flux012"])
def test_state_resumes_from_a_checkpoint_into_buffers(case, T):
    chain = CASES[case]
    xs, grads = make_problem(T)
    params = torch_params(xs)
    opt = ChainOptimiser(params, chain)
    for t in range(8):
        set_grads(params, grads[t])
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": [p.detach() for p in params], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    params2 = torch_params([x.numpy() for x in saved["model"]])
    opt2 = ChainOptimiser(params2, [{"rule": "Descent"}])
    opt2.load_state_dict(saved["opt"])
    for t in range(8, STEPS):
        for o, ps in ((opt, params), (opt2, params2)):
            set_grads(ps, grads[t])
            o.step()
        for a, b in zip(params, params2):
            assert torch.equal(a, b)
    keys = [k for k, v in opt.state[params[0]].items() if torch.is_tensor(v)]
    assert keys
    for o, ps in ((opt, params), (opt2, params2)):
        assert one_storage(ps)
        for k in keys:
            assert one_storage([o.state[p][k] for p in ps]), k
    for a, b in zip(params, params2):
        assert opt.state[a].keys() == opt2.state[b].keys()
        for k, v in opt.state[a].items():
            assert torch.equal(v, opt2.state[b][k]) if torch.is_tensor(v) else v == opt2.state[b][k]


def test_a_parameter_moved_out_of_the_buffer_is_refused():
    xs, grads = make_problem(np.float64, steps=2)
    params = torch_params(xs)
    opt = ChainOptimiser(params, CASES["WD+Adam"])
    set_grads(params, grads[0])
    opt.step()
    params[2].data = params[2].data.clone()  # no longer a view of the buffer: a step would miss it
    set_grads(params, grads[1])
    with pytest.raises(RuntimeError, match="no longer lies"):
        opt.step()
