"""A torch optimiser that applies a chain of optim_spec rule dicts with the Optimisers.jl meaning.

    opt = ChainOptimiser(model.parameters(), optim_spec.optimiser_chain("Adam", 3e-4, 1e-6))
    opt.set_lr_factor(f)   # schedule: every rule's eta becomes base_eta * f (Optimisers.adjust!)
    opt.step()

Semantics (Optimisers.jl v0.4 `src/rules.jl`, `src/interface.jl`; Flux 0.12.4 `src/optimise/optimisers.jl`):
- the chain runs left to right: each rule's output is the next rule's gradient (`OptimiserChain`);
- every rule reads the parameter value *before* the step; at the end `x .= x .- step`;
- arithmetic is in the parameter's dtype: hyperparameters are rounded to it first, and scalar
  expressions such as `1 - beta1` are evaluated in it (numpy scalars of that dtype, on the host);
- Adam-like rules keep the powers beta^t as a running product in the parameter's dtype, starting
  at beta (t = 1) and multiplied by beta after every step, exactly like `(mt, vt, βt .* β)`.
The operations follow Optimisers' order of arithmetic, one rounding per operation, so on a CPU
the results are those of Julia's broadcasts to the bit (square roots are taken by NumPy: see _sqrt_).

State: per parameter, "<i>.m"/"<i>.v"/"<i>.s"/"<i>.vel" tensors and "<i>.beta_t" (a pair of Python
floats, exact values of the parameter dtype) for rule number i of the chain; the chain and the
current `lr_factor` live in the param group, so state_dict()/load_state_dict() resume exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..optim_spec import RULES

# Every rule's fields with their defaults (optim_spec.RULES: Optimisers.jl's, Flux 0.12's for *_flux012).
RULE_DEFAULTS: dict[str, dict] = {name: rule.fields for name, rule in RULES.items()}

_NP_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}

# Flux 0.12's fixed epsilon (`const ϵ = 1e-8`), used by its ADAM and AdaBelief.
_FLUX012_EPS = 1e-8


def normalize_rule(rule: dict) -> dict:
    """A copy of `rule` with every field filled in (defaults as in Optimisers.jl); ValueError if unknown."""
    if not isinstance(rule, dict) or "rule" not in rule:
        raise ValueError(f"a rule must be a dict with a 'rule' key, got {rule!r}")
    name = rule["rule"]
    if name not in RULE_DEFAULTS:
        raise ValueError(f"unknown optimiser rule {name!r}; known: {', '.join(RULE_DEFAULTS)}")
    defaults = RULE_DEFAULTS[name]
    unknown = set(rule) - set(defaults) - {"rule"}
    if unknown:
        raise ValueError(f"rule {name!r} has no field(s) {sorted(unknown)}; it takes {sorted(defaults)}")
    out: dict = {"rule": name}
    for key, default in defaults.items():
        value = rule.get(key, default)
        if key == "beta":
            if len(value) != 2:
                raise ValueError(f"rule {name!r}: beta must be a pair, got {value!r}")
            value = [float(value[0]), float(value[1])]
            if not all(0.0 <= b < 1.0 for b in value):
                raise ValueError(f"rule {name!r}: beta must lie in [0, 1), got {value!r}")
        elif key == "couple":
            value = bool(value)
        else:
            value = float(value)
            if not math.isfinite(value) or (key == "eta" and value < 0):
                raise ValueError(f"rule {name!r}: bad {key} {value!r}")
        out[key] = value
    return out


def normalize_chain(chain) -> list[dict]:
    """Validated, filled-in copies of the rules of `chain` (a list of optim_spec rule dicts)."""
    if isinstance(chain, dict):
        raise ValueError("a chain is a list of rule dicts; wrap a single rule as [rule]")
    return [normalize_rule(r) for r in chain]


class _OptimizerWithoutStepWrapper(torch.optim.Optimizer):
    """torch.optim.Optimizer whose step() is not wrapped: torch wraps every optimiser's step() in a
    profiler scope (record_function) and the calls of the step hooks, through the private method
    _patch_step_function, which this class overrides. Measured (1 thread, 2-core VM): the wrapper
    costs 25-30 us of ChainOptimiser's Adam step on LeNet-5's 44k parameters (157 vs 133 us), and
    35-55 us (1.5-2.5%) of a batch-32 training step of ~2.3 ms (blocks of 50 steps alternating in
    one process, paired medians). Step hooks are refused rather than never called."""

    def _patch_step_function(self) -> None:
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"  # as torch's

    def register_step_pre_hook(self, hook):
        raise NotImplementedError(f"{type(self).__name__} does not run step hooks")

    register_step_post_hook = register_step_pre_hook


class ChainOptimiser(_OptimizerWithoutStepWrapper):
    """Applies `chain` (optim_spec rule dicts, left to right) with exactly the Optimisers.jl meaning.

    The parameters of each param group move into one contiguous buffer, in order, each becoming a
    view of it (values unchanged; they must share dtype and device). A step then runs each operation
    of the rule once over that buffer: the same arithmetic, element by element, as per parameter,
    for a fraction of the cost of one op per parameter tensor (README, Performance). The state
    tensors are views of one buffer per key in the same way. Every parameter needs a gradient at
    every step (they are all stepped together)."""

    def __init__(self, params, chain: list[dict]):
        self._buffers: list[_GroupBuffers] = []  # one per param group, in order
        super().__init__(params, {"chain": normalize_chain(chain), "lr_factor": 1.0})

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["chain"] = normalize_chain(group["chain"])  # each group owns its copy
        group["lr_factor"] = float(group["lr_factor"])
        self._buffers.append(_GroupBuffers(group["params"]))

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for buffers in self._buffers:
            buffers.state = None  # the loaded tensors are gathered into buffers at the next step

    def set_lr_factor(self, factor: float) -> None:
        """From the next step on, every rule's eta is base_eta * factor (Optimisers.adjust! semantics:
        eta is replaced, the state is kept; Momentum/Nesterov keep eta inside their velocity, so
        this is not torch SGD's lr change)."""
        factor = float(factor)
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"lr factor must be finite and >= 0, got {factor!r}")
        for group in self.param_groups:
            group["lr_factor"] = factor

    @property
    def lr_factor(self) -> float:
        return self.param_groups[0]["lr_factor"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, buffers in zip(self.param_groups, self._buffers):
            params, chain = group["params"], group["chain"]
            buffers.check(params)
            g = torch.cat([p.grad.reshape(-1) for p in params], out=buffers.grad)
            state = buffers.group_state([self.state[p] for p in params], chain)
            dx = g
            for i, rule in enumerate(chain):
                dx = _APPLY[rule["rule"]](rule, i, buffers.T, group["lr_factor"], buffers.x, dx, state)
            buffers.x.sub_(dx)  # subtract!: x .= x .- x̄, after every rule has read x
            beta_t = {k: v for k, v in state.items() if k.endswith(".beta_t")}
            for p in params:  # this step's beta^t in each parameter's state too (state_dict)
                self.state[p].update(beta_t)
        return loss


class _GroupBuffers:
    """One param group's parameters, gradients and state tensors, each in one contiguous buffer."""

    def __init__(self, params: list):
        if not params:
            raise ValueError("no parameters to optimise")
        dtype, device = params[0].dtype, params[0].device
        if dtype not in _NP_DTYPES or any(p.dtype != dtype or p.device != device for p in params):
            raise TypeError("ChainOptimiser takes float16/32/64 parameters of one dtype and device a group, "
                            f"got {sorted({(str(p.dtype), str(p.device)) for p in params})}")
        self.shapes = [p.shape for p in params]
        with torch.no_grad():
            self.x = torch.cat([p.detach().reshape(-1) for p in params])
        for p, view in zip(params, _views(self.x, self.shapes)):
            p.data, p.grad = view, None
        self.ptrs = [p.data_ptr() for p in params]
        self.grad = torch.empty_like(self.x)
        self.T = _NP_DTYPES[dtype]
        self.state: dict | None = None  # "<i>.m" etc. over the whole buffer, and the "<i>.beta_t"

    def check(self, params: list) -> None:
        for p, ptr in zip(params, self.ptrs):
            if p.data_ptr() != ptr:
                raise RuntimeError("a parameter no longer lies in ChainOptimiser's buffer (its .data was "
                                   "replaced); create the optimiser after moving the model")
            if p.grad is None:
                raise RuntimeError("a parameter has no gradient: ChainOptimiser steps all its parameters "
                                   "together, each needs one (did it take part in the loss?)")

    def group_state(self, states: list[dict], chain: list[dict]) -> dict:
        """The group's state (whole-buffer tensors, beta^t). On the first step it creates it and the
        parameters' states as views of it; after load_state_dict it gathers theirs into buffers."""
        if self.state is None:
            if not any(states):
                self.state = _initial_state(chain, self.T, self.x)
            elif any(list(st) != list(states[0]) for st in states):
                raise ValueError("the parameters' optimiser states differ in their keys")
            else:
                self.state = {k: torch.cat([st[k].reshape(-1) for st in states]) if torch.is_tensor(v) else v
                              for k, v in states[0].items()}
            for k, v in self.state.items():
                parts = _views(v, self.shapes) if torch.is_tensor(v) else [v] * len(states)
                for st, part in zip(states, parts):
                    st[k] = part
        return self.state


def _views(buffer: torch.Tensor, shapes: list) -> list:
    """Consecutive pieces of a 1-d buffer, as views of the given shapes."""
    views, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(buffer[offset:offset + n].view(shape))
        offset += n
    return views


def _initial_state(chain: list[dict], T, x: torch.Tensor) -> dict:
    """A new state: zero moments (tensors like x) and beta^1 rounded to T, per rule of the chain."""
    state: dict = {}
    for i, rule in enumerate(chain):
        for key in RULES[rule["rule"]].state:
            if key == "beta_t":  # init: T.(o.beta), i.e. beta^1 rounded to the parameter's dtype
                state[f"{i}.beta_t"] = (float(T(rule["beta"][0])), float(T(rule["beta"][1])))
            else:
                state[f"{i}.{key}"] = torch.zeros_like(x)
    return state


def _advance_beta_t(state: dict, i: int, bt1, bt2, b1, b2) -> None:
    # Optimisers returns βt .* β: the product in the parameter's dtype, not beta ** t in float64.
    state[f"{i}.beta_t"] = (float(bt1 * b1), float(bt2 * b2))


def _eta(rule: dict, T, factor: float):
    # adjust!(state, base_eta * factor) stores a Float64 eta; apply! then uses T(o.eta).
    return T(rule["eta"] * factor)


# ---------------------------------------------------------------- building blocks
# Each operation is one tensor op, rounded once, in Optimisers' order of arithmetic: no alpha= or
# lerp (they may fuse two operations into one rounding). Scalars are exact values of T.


def _sqrt_(t: torch.Tensor) -> torch.Tensor:
    """sqrt in place, correctly rounded like Julia's: on a CPU through NumPy (a zero-copy view).
    torch's CPU sqrt (MKL VML) is off by one ulp on ~0.6% of float32 inputs and takes ~5 ns per
    exact zero, i.e. ~0.2 ms a step for the second moments of LeNet's dead units (always 0)."""
    if t.device.type == "cpu" and t.dtype in _NP_DTYPES and t.is_contiguous():
        a = t.numpy()
        np.sqrt(a, out=a)
    else:
        t.sqrt_()
    return t


def _update_m(m, dx, b1):
    """mt = β1 * mt + (1 - β1) * dx; returns the tensor (1 - β1) * dx."""
    tmp = dx.mul(float(1 - b1))
    m.mul_(float(b1)).add_(tmp)
    return tmp


def _update_v(v, dx, b2):
    """vt = β2 * vt + (1 - β2) * abs2(dx)."""
    sq = dx.mul(dx).mul_(float(1 - b2))
    v.mul_(float(b2)).add_(sq)


def _adam_direction(m, v, bt1, bt2, eps):
    """mt / (1 - βt1) / (sqrt(vt / (1 - βt2)) + ϵ), a new tensor (no eta)."""
    den = _sqrt_(v.div(float(1 - bt2))).add_(float(eps))
    return m.div(float(1 - bt1)).div_(den)


def _moments_and_beta_t(rule, i, T, dx, state):
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    bt1, bt2 = (T(b) for b in state[f"{i}.beta_t"])
    m, v = state[f"{i}.m"], state[f"{i}.v"]
    tmp = _update_m(m, dx, b1)
    _update_v(v, dx, b2)
    _advance_beta_t(state, i, bt1, bt2, b1, b2)
    return b1, b2, bt1, bt2, m, v, tmp


def _update_s(s, dx, m, b2):
    """AdaBelief's s = β2 s + (1-β2) (dx - m)^2, with the new m."""
    diff = dx.sub(m)
    diff.mul_(diff).mul_(float(1 - b2))
    s.mul_(float(b2)).add_(diff)


# ---------------------------------------------------------------- rules
# Each rule: (rule, i, T, factor, x, dx, state) -> the tensor passed on as the next gradient. x is
# the parameters before the step, dx the incoming gradient (never written to), state the group's
# state (tensors over the whole buffer, "<i>.beta_t" pairs) and i the rule's place in the chain.


def _descent(rule, i, T, factor, x, dx, state):
    return dx.mul(float(_eta(rule, T, factor)))


def _momentum(rule, i, T, factor, x, dx, state):
    # Optimisers: mvel = ρ mvel + η dx; the step is mvel. eta sits inside the velocity.
    eta, rho = _eta(rule, T, factor), T(rule["rho"])
    vel = state[f"{i}.vel"]
    tmp = dx.mul(float(eta))
    vel.mul_(float(rho)).add_(tmp)
    return vel  # the state itself, as Optimisers returns it; nothing downstream writes to it


def _nesterov(rule, i, T, factor, x, dx, state):
    # Optimisers: step = -ρ^2 vel + (1+ρ) η dx with the OLD vel; then vel = ρ vel - η dx.
    eta, rho = _eta(rule, T, factor), T(rule["rho"])
    vel = state[f"{i}.vel"]
    out = vel.mul(float(-(rho * rho)))
    out.add_(dx.mul(float((1 + rho) * eta)))  # ((1+ρ)*η)*dx: left to right
    tmp = dx.mul(float(eta))
    vel.mul_(float(rho)).sub_(tmp)
    return out


def _adam(rule, i, T, factor, x, dx, state):
    # Optimisers: mt/(1-βt1) / (sqrt(vt/(1-βt2)) + ϵ) * η  -- eta multiplies last; ϵ outside the sqrt.
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    _, _, bt1, bt2, m, v, _ = _moments_and_beta_t(rule, i, T, dx, state)
    return _adam_direction(m, v, bt1, bt2, eps).mul_(float(eta))


def _nadam(rule, i, T, factor, x, dx, state):
    # Optimisers: (β1 mt/(1 - β1 βt1) + (1-β1) dx/(1 - βt1)) / (sqrt(vt β2/(1 - βt2)) + ϵ) * η.
    # Note the extra β2 inside the sqrt, and no momentum schedule (unlike torch's NAdam).
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    b1, b2, bt1, bt2, m, v, tmp = _moments_and_beta_t(rule, i, T, dx, state)
    out = m.mul(float(b1)).div_(float(1 - b1 * bt1))
    out.add_(tmp.div_(float(1 - bt1)))  # tmp = (1-β1) dx, reused
    den = _sqrt_(v.mul(float(b2)).div_(float(1 - bt2))).add_(float(eps))
    return out.div_(den).mul_(float(eta))


def _adamw(rule, i, T, factor, x, dx, state):
    # Optimisers v0.4: d = Adam direction with eta = 1;
    # couple=true: η (d + λ x) (torch AdamW); couple=false: η d + λ x (decay NOT scaled by eta).
    eta, eps, lam = _eta(rule, T, factor), T(rule["epsilon"]), T(rule["lambda"])
    _, _, bt1, bt2, m, v, _ = _moments_and_beta_t(rule, i, T, dx, state)
    out = _adam_direction(m, v, bt1, bt2, eps)
    if rule["couple"]:
        if lam != 0:
            out.add_(x.mul(float(lam)))
        out.mul_(float(eta))
    else:
        out.mul_(float(eta))
        if lam != 0:
            out.add_(x.mul(float(lam)))
    return out


def _adabelief(rule, i, T, factor, x, dx, state):
    # Optimisers: st = β2 st + (1-β2) (dx - mt)^2 + ϵ with the NEW mt (stored st includes ϵ);
    # step = η mt/(1-βt1) / (sqrt(st/(1-βt2)) + ϵ) -- eta multiplies first here. Default ϵ = 1e-16.
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    bt1, bt2 = (T(b) for b in state[f"{i}.beta_t"])
    m, s = state[f"{i}.m"], state[f"{i}.s"]
    _update_m(m, dx, b1)
    _update_s(s, dx, m, b2)
    s.add_(float(eps))
    _advance_beta_t(state, i, bt1, bt2, b1, b2)
    out = m.mul(float(eta)).div_(float(1 - bt1))
    den = _sqrt_(s.div(float(1 - bt2))).add_(float(eps))
    return out.div_(den)


def _weight_decay(rule, i, T, factor, x, dx, state):
    # Optimisers: dx + λ x (coupled L2). Its lambda is not an eta: a schedule leaves it alone.
    lam = T(rule["lambda"])
    if lam == 0:
        return dx
    return x.mul(float(lam)).add_(dx)


def _adamw_flux012(rule, i, T, factor, x, dx, state):
    # Flux 0.12: ADAMW(η, β, decay) = Optimiser(ADAM(η, β), WeightDecay(decay)):
    # step = η * adam + decay * x (decay not scaled by eta; decay = 0 gives ADAM exactly). ϵ = 1e-8.
    eta, eps, decay = _eta(rule, T, factor), T(_FLUX012_EPS), T(rule["decay"])
    _, _, bt1, bt2, m, v, _ = _moments_and_beta_t(rule, i, T, dx, state)
    out = _adam_direction(m, v, bt1, bt2, eps).mul_(float(eta))
    if decay != 0:
        out.add_(x.mul(float(decay)))
    return out


def _adabelief_flux012(rule, i, T, factor, x, dx, state):
    # Flux 0.12 AdaBelief: st = β2 st + (1-β2) (dx - mt)^2 (no ϵ in st); step = η mt / (sqrt(st) + 1e-8):
    # NO bias correction at all.
    eta, eps = _eta(rule, T, factor), T(_FLUX012_EPS)
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    m, s = state[f"{i}.m"], state[f"{i}.s"]
    _update_m(m, dx, b1)
    _update_s(s, dx, m, b2)
    den = _sqrt_(s.clone()).add_(float(eps))
    return m.mul(float(eta)).div_(den)


_APPLY = {
    "Descent": _descent,
    "Momentum": _momentum,
    "Nesterov": _nesterov,
    "Adam": _adam,
    "NAdam": _nadam,
    "AdamW": _adamw,
    "AdaBelief": _adabelief,
    "WeightDecay": _weight_decay,
    "ADAMW_flux012": _adamw_flux012,
    "AdaBelief_flux012": _adabelief_flux012,
}
assert set(_APPLY) == set(RULES)
