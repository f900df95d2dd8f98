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

# Every rule, with the Optimisers.jl defaults (Flux 0.12 defaults for the *_flux012 rules).
RULE_DEFAULTS: dict[str, dict] = {
    "Descent": {"eta": 0.1},
    "Momentum": {"eta": 0.01, "rho": 0.9},
    "Nesterov": {"eta": 0.001, "rho": 0.9},
    "Adam": {"eta": 1e-3, "beta": (0.9, 0.999), "epsilon": 1e-8},
    "NAdam": {"eta": 1e-3, "beta": (0.9, 0.999), "epsilon": 1e-8},
    "AdamW": {"eta": 1e-3, "beta": (0.9, 0.999), "lambda": 0.0, "epsilon": 1e-8, "couple": True},
    "AdaBelief": {"eta": 1e-3, "beta": (0.9, 0.999), "epsilon": 1e-16},
    "WeightDecay": {"lambda": 5e-4},
    "ADAMW_flux012": {"eta": 1e-3, "beta": (0.9, 0.999), "decay": 0.0},
    "AdaBelief_flux012": {"eta": 1e-3, "beta": (0.9, 0.999)},
}

# Rules whose state carries the running product beta^t.
_BETA_T_RULES = ("Adam", "NAdam", "AdamW", "AdaBelief", "ADAMW_flux012")

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


class ChainOptimiser(torch.optim.Optimizer):
    """Applies `chain` (optim_spec rule dicts, left to right) with exactly the Optimisers.jl meaning."""

    def __init__(self, params, chain: list[dict]):
        super().__init__(params, {"chain": normalize_chain(chain), "lr_factor": 1.0})

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["chain"] = normalize_chain(group["chain"])  # each group owns its copy
        group["lr_factor"] = float(group["lr_factor"])

    def _patch_step_function(self) -> None:
        # torch wraps every optimiser's step() in a profiler scope and its hook calls: ~65 us a
        # step on a 2-core VM, as much as 10 of the rule's tensor ops. ChainOptimiser runs no hooks.
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"

    def register_step_pre_hook(self, hook):
        raise NotImplementedError("ChainOptimiser does not run step hooks")

    register_step_post_hook = register_step_pre_hook

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

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's zero_grad; set_to_none (the default) without its per-call profiler scope."""
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self._step_flat(group):
                continue
            chain = group["chain"]
            buckets: dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is None:  # Optimisers skips a leaf with no gradient, state untouched
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("ChainOptimiser does not support sparse gradients")
                if p.dtype not in _NP_DTYPES:
                    raise TypeError(f"ChainOptimiser supports float16/32/64 parameters, got {p.dtype}")
                state = self.state[p]
                if not state:
                    _init_state(state, p, chain)
                # Params share one foreach call when device, dtype and beta^t history agree.
                key = (p.device, p.dtype, _beta_t_key(state, chain))
                buckets.setdefault(key, []).append(p)
            for (_, dtype, _), params in buckets.items():
                self._step_bucket(params, chain, group["lr_factor"], _NP_DTYPES[dtype])
        return loss

    def _step_flat(self, group: dict) -> bool:
        """One step of `group` on whole-group buffers, when its parameters lie back to back in one
        storage (see `flatten_parameters`): every operation is then one tensor op over all the
        parameters instead of a _foreach over each of them. The same operations in the same order,
        elementwise, so the same bits. Returns False (nothing done) where that layout is not there."""
        plans = self.__dict__.setdefault("_flat_plans", {})
        plan = plans.get(id(group))
        if plan is None or not plan.fits(group, self.state):
            plan = _FlatPlan.build(group, self.state)
            if plan is None:
                plans.pop(id(group), None)
                return False
            plans[id(group)] = plan
        params = group["params"]
        g = torch.cat([p.grad.reshape(-1) for p in params], out=plan.grad)
        chain, T = group["chain"], plan.T
        st = plan.pseudo_state(self.state)
        dx = [g]
        for i, rule in enumerate(chain):
            dx = _APPLY[rule["rule"]](rule, i, T, group["lr_factor"], plan.xs, dx, [st])
        torch._foreach_sub_(plan.xs, dx)
        plan.store_beta_t(st, self.state)
        return True

    def _step_bucket(self, xs: list, chain: list[dict], factor: float, T) -> None:
        states = [self.state[p] for p in xs]
        dx = [p.grad for p in xs]  # never written to: every rule returns new tensors (or its state)
        for i, rule in enumerate(chain):
            dx = _APPLY[rule["rule"]](rule, i, T, factor, xs, dx, states)
        torch._foreach_sub_(xs, dx)  # subtract!: x .= x .- x̄, after every rule has read x


def flatten_parameters(params) -> torch.Tensor:
    """Move `params` (same dtype and device) into one contiguous buffer, in order, each parameter
    becoming a view of it; values unchanged. Returns the buffer.

    ChainOptimiser then steps them all with one tensor op per operation of the rule (the same
    arithmetic, element by element), which on a CPU costs a fraction of one op per parameter."""
    params = list(params)
    if not params:
        raise ValueError("no parameters to flatten")
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        offset = 0
        for p in params:
            n = p.numel()
            p.data = flat[offset:offset + n].view(p.shape)
            p.grad = None
            offset += n
    return flat


class _FlatPlan:
    """What a flat step of one param group needs: the buffers, checked cheaply on every step."""

    def __init__(self, group, state, x, T, keys, beta_keys):
        params = group["params"]
        self.group = group
        self.ptrs = [p.data_ptr() for p in params]
        self.xs = [x]
        self.T = T
        self.grad = torch.empty_like(x)
        self.keys = keys  # state tensor keys, e.g. "0.m", "0.v"
        self.beta_keys = beta_keys
        self.flat_state = {k: _flat_view([state[p][k] for p in params], x) for k in keys}
        self.state = state
        self.dicts = [state[p] for p in params]
        self.views = [[(k, state[p][k]) for k in keys] for p in params]

    @staticmethod
    def build(group, state) -> "_FlatPlan | None":
        params, chain = group["params"], group["chain"]
        if not params or any(p.grad is None or p.grad.is_sparse for p in params):
            return None
        p0 = params[0]
        if p0.dtype not in _NP_DTYPES or any(p.dtype != p0.dtype or p.device != p0.device for p in params):
            return None
        x = _flat_view(params)
        if x is None:
            return None
        states = [state[p] for p in params]
        if all(not st for st in states):
            # fresh state, allocated as views of one zeroed buffer per key
            probe: dict = {}
            _init_state(probe, p0, chain)
            keys = [k for k, v in probe.items() if torch.is_tensor(v)]
            buffers = {k: torch.zeros_like(x) for k in keys}
            offset = 0
            for p, st in zip(params, states):
                n = p.numel()
                _init_state(st, p, chain)  # beta_t and keys exactly as the per-parameter path
                for k in keys:
                    st[k] = buffers[k][offset:offset + n].view(p.shape)
                offset += n
        elif any(not st for st in states) or len({_beta_t_key(st, chain) for st in states}) != 1:
            return None
        keys = [k for k, v in states[0].items() if torch.is_tensor(v)]
        if any([k for k, v in st.items() if torch.is_tensor(v)] != keys for st in states):
            return None
        if any(st[k].shape != p.shape or st[k].dtype != p.dtype or st[k].device != p.device
               for p, st in zip(params, states) for k in keys):
            return None
        for k in keys:
            if _flat_view([st[k] for st in states], x) is None:
                # e.g. state loaded from a checkpoint: gather it once into one buffer
                buffer = torch.cat([st[k].reshape(-1) for st in states])
                offset = 0
                for p, st in zip(params, states):
                    n = p.numel()
                    st[k] = buffer[offset:offset + n].view(p.shape)
                    offset += n
        beta_keys = [k for k in states[0] if k.endswith(".beta_t")]
        return _FlatPlan(group, state, x, _NP_DTYPES[p0.dtype], keys, beta_keys)

    def fits(self, group, state) -> bool:
        """Same group, state and storage as when built, every gradient there, no state tensor replaced."""
        params = group["params"]
        if group is not self.group or state is not self.state or len(params) != len(self.ptrs):
            return False
        for p, ptr, st, views in zip(params, self.ptrs, self.dicts, self.views):
            if p.grad is None or p.data_ptr() != ptr or state.get(p) is not st:
                return False
            for k, v in views:
                if st.get(k) is not v:
                    return False
        return True

    def pseudo_state(self, state) -> dict:
        st = dict(self.flat_state)
        first = state[self.group["params"][0]]
        for k in self.beta_keys:
            st[k] = first[k]
        return st

    def store_beta_t(self, st, state) -> None:
        if self.beta_keys:
            for p in self.group["params"]:
                per = state[p]
                for k in self.beta_keys:
                    per[k] = st[k]


def _flat_view(tensors, like=None):
    """One 1-d tensor over `tensors` when they are contiguous and lie back to back in one storage
    (the first at the start of the span), else None; with `like`, also of its size, dtype, device."""
    t0 = tensors[0]
    storage = t0.untyped_storage().data_ptr()
    offset = t0.storage_offset()
    for t in tensors:
        if (not t.is_contiguous() or t.untyped_storage().data_ptr() != storage
                or t.storage_offset() != offset or t.dtype != t0.dtype or t.device != t0.device):
            return None
        offset += t.numel()
    total = offset - t0.storage_offset()
    if like is not None and (total != like.numel() or t0.dtype != like.dtype or t0.device != like.device):
        return None
    return t0.detach().as_strided((total,), (1,))


# ---------------------------------------------------------------- state


def _init_state(state: dict, p: torch.Tensor, chain: list[dict]) -> None:
    for i, rule in enumerate(chain):
        name = rule["rule"]
        if name in ("Momentum", "Nesterov"):
            state[f"{i}.vel"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif name in _BETA_T_RULES or name == "AdaBelief_flux012":
            state[f"{i}.m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            second = "s" if name.startswith("AdaBelief") else "v"
            state[f"{i}.{second}"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if name in _BETA_T_RULES:
            # init: T.(o.beta), i.e. beta^1 rounded to the parameter's dtype
            T = _NP_DTYPES[p.dtype]
            state[f"{i}.beta_t"] = (float(T(rule["beta"][0])), float(T(rule["beta"][1])))


def _beta_t_key(state: dict, chain: list[dict]) -> tuple:
    return tuple(state[f"{i}.beta_t"] for i, r in enumerate(chain) if r["rule"] in _BETA_T_RULES)


def _advance_beta_t(states: list, i: int, bt1, bt2, b1, b2) -> None:
    # Optimisers returns βt .* β: the product in the parameter's dtype, not beta ** t in float64.
    new = (float(bt1 * b1), float(bt2 * b2))
    for st in states:
        st[f"{i}.beta_t"] = new


def _eta(rule: dict, T, factor: float):
    # adjust!(state, base_eta * factor) stores a Float64 eta; apply! then uses T(o.eta).
    return T(rule["eta"] * factor)


# ---------------------------------------------------------------- building blocks


def _sqrt_(tensors: list) -> list:
    """sqrt in place, correctly rounded like Julia's: on a CPU through NumPy (zero-copy views).
    torch's CPU sqrt (MKL VML) is off by one ulp on ~0.6% of float32 inputs and takes ~5 ns per
    exact zero, i.e. ~0.2 ms a step for the second moments of LeNet's dead units (always 0)."""
    for t in tensors:
        if t.device.type == "cpu" and t.dtype in _NP_DTYPES and t.is_contiguous():
            a = t.numpy()
            np.sqrt(a, out=a)
        else:
            t.sqrt_()
    return tensors


def _update_m(ms, dx, b1):
    """mt = β1 * mt + (1 - β1) * dx, rounded per operation; returns the list (1 - β1) * dx."""
    tmp = torch._foreach_mul(dx, float(1 - b1))
    torch._foreach_mul_(ms, float(b1))
    torch._foreach_add_(ms, tmp)  # no alpha= / lerp: those may fuse into one rounding
    return tmp


def _update_v(vs, dx, b2):
    """vt = β2 * vt + (1 - β2) * abs2(dx)."""
    sq = torch._foreach_mul(dx, dx)
    torch._foreach_mul_(sq, float(1 - b2))
    torch._foreach_mul_(vs, float(b2))
    torch._foreach_add_(vs, sq)


def _adam_direction(ms, vs, bt1, bt2, eps):
    """mt / (1 - βt1) / (sqrt(vt / (1 - βt2)) + ϵ), as new tensors (no eta)."""
    den = torch._foreach_div(vs, float(1 - bt2))
    _sqrt_(den)
    torch._foreach_add_(den, float(eps))
    out = torch._foreach_div(ms, float(1 - bt1))
    torch._foreach_div_(out, den)
    return out


def _moments_and_beta_t(rule, i, T, dx, states):
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    bt1, bt2 = (T(b) for b in states[0][f"{i}.beta_t"])
    ms = [st[f"{i}.m"] for st in states]
    vs = [st[f"{i}.v"] for st in states]
    tmp = _update_m(ms, dx, b1)
    _update_v(vs, dx, b2)
    _advance_beta_t(states, i, bt1, bt2, b1, b2)
    return b1, b2, bt1, bt2, ms, vs, tmp


# ---------------------------------------------------------------- rules
# Each rule: (rule, i, T, factor, xs, dx, states) -> the list passed on as the next gradient.


def _descent(rule, i, T, factor, xs, dx, states):
    return torch._foreach_mul(dx, float(_eta(rule, T, factor)))


def _momentum(rule, i, T, factor, xs, dx, states):
    # Optimisers: mvel = ρ mvel + η dx; the step is mvel. eta sits inside the velocity.
    eta, rho = _eta(rule, T, factor), T(rule["rho"])
    vel = [st[f"{i}.vel"] for st in states]
    tmp = torch._foreach_mul(dx, float(eta))
    torch._foreach_mul_(vel, float(rho))
    torch._foreach_add_(vel, tmp)
    return vel  # the state itself, as Optimisers returns it; nothing downstream writes to it


def _nesterov(rule, i, T, factor, xs, dx, states):
    # Optimisers: step = -ρ^2 vel + (1+ρ) η dx with the OLD vel; then vel = ρ vel - η dx.
    eta, rho = _eta(rule, T, factor), T(rule["rho"])
    vel = [st[f"{i}.vel"] for st in states]
    out = torch._foreach_mul(vel, float(-(rho * rho)))
    tmp = torch._foreach_mul(dx, float((1 + rho) * eta))  # ((1+ρ)*η)*dx: left to right
    torch._foreach_add_(out, tmp)
    tmp = torch._foreach_mul(dx, float(eta))
    torch._foreach_mul_(vel, float(rho))
    torch._foreach_sub_(vel, tmp)
    return out


def _adam(rule, i, T, factor, xs, dx, states):
    # Optimisers: mt/(1-βt1) / (sqrt(vt/(1-βt2)) + ϵ) * η  -- eta multiplies last; ϵ outside the sqrt.
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    _, _, bt1, bt2, ms, vs, _ = _moments_and_beta_t(rule, i, T, dx, states)
    out = _adam_direction(ms, vs, bt1, bt2, eps)
    torch._foreach_mul_(out, float(eta))
    return out


def _nadam(rule, i, T, factor, xs, dx, states):
    # Optimisers: (β1 mt/(1 - β1 βt1) + (1-β1) dx/(1 - βt1)) / (sqrt(vt β2/(1 - βt2)) + ϵ) * η.
    # Note the extra β2 inside the sqrt, and no momentum schedule (unlike torch's NAdam).
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    b1, b2, bt1, bt2, ms, vs, tmp = _moments_and_beta_t(rule, i, T, dx, states)
    out = torch._foreach_mul(ms, float(b1))
    torch._foreach_div_(out, float(1 - b1 * bt1))
    torch._foreach_div_(tmp, float(1 - bt1))  # tmp = (1-β1) dx, reused
    torch._foreach_add_(out, tmp)
    den = torch._foreach_mul(vs, float(b2))
    torch._foreach_div_(den, float(1 - bt2))
    _sqrt_(den)
    torch._foreach_add_(den, float(eps))
    torch._foreach_div_(out, den)
    torch._foreach_mul_(out, float(eta))
    return out


def _adamw(rule, i, T, factor, xs, dx, states):
    # Optimisers v0.4: d = Adam direction with eta = 1;
    # couple=true: η (d + λ x) (torch AdamW); couple=false: η d + λ x (decay NOT scaled by eta).
    eta, eps, lam = _eta(rule, T, factor), T(rule["epsilon"]), T(rule["lambda"])
    _, _, bt1, bt2, ms, vs, _ = _moments_and_beta_t(rule, i, T, dx, states)
    out = _adam_direction(ms, vs, bt1, bt2, eps)
    if rule["couple"]:
        if lam != 0:
            torch._foreach_add_(out, torch._foreach_mul(xs, float(lam)))
        torch._foreach_mul_(out, float(eta))
    else:
        torch._foreach_mul_(out, float(eta))
        if lam != 0:
            torch._foreach_add_(out, torch._foreach_mul(xs, float(lam)))
    return out


def _update_s(ss, dx, ms, b2):
    """AdaBelief's s = β2 s + (1-β2) (dx - m)^2, with the new m, each operation rounded once."""
    diff = torch._foreach_sub(dx, ms)
    torch._foreach_mul_(diff, diff)
    torch._foreach_mul_(diff, float(1 - b2))
    torch._foreach_mul_(ss, float(b2))
    torch._foreach_add_(ss, diff)


def _adabelief(rule, i, T, factor, xs, dx, states):
    # Optimisers: st = β2 st + (1-β2) (dx - mt)^2 + ϵ with the NEW mt (stored st includes ϵ);
    # step = η mt/(1-βt1) / (sqrt(st/(1-βt2)) + ϵ) -- eta multiplies first here. Default ϵ = 1e-16.
    eta, eps = _eta(rule, T, factor), T(rule["epsilon"])
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    bt1, bt2 = (T(b) for b in states[0][f"{i}.beta_t"])
    ms = [st[f"{i}.m"] for st in states]
    ss = [st[f"{i}.s"] for st in states]
    _update_m(ms, dx, b1)
    _update_s(ss, dx, ms, b2)
    torch._foreach_add_(ss, float(eps))
    _advance_beta_t(states, i, bt1, bt2, b1, b2)
    out = torch._foreach_mul(ms, float(eta))
    torch._foreach_div_(out, float(1 - bt1))
    den = torch._foreach_div(ss, float(1 - bt2))
    _sqrt_(den)
    torch._foreach_add_(den, float(eps))
    torch._foreach_div_(out, den)
    return out


def _weight_decay(rule, i, T, factor, xs, dx, states):
    # Optimisers: dx + λ x (coupled L2). Its lambda is not an eta: a schedule leaves it alone.
    lam = T(rule["lambda"])
    if lam == 0:
        return dx
    out = torch._foreach_mul(xs, float(lam))
    torch._foreach_add_(out, dx)
    return out


def _adamw_flux012(rule, i, T, factor, xs, dx, states):
    # Flux 0.12: ADAMW(η, β, decay) = Optimiser(ADAM(η, β), WeightDecay(decay)):
    # step = η * adam + decay * x (decay not scaled by eta; decay = 0 gives ADAM exactly). ϵ = 1e-8.
    eta, eps, decay = _eta(rule, T, factor), T(_FLUX012_EPS), T(rule["decay"])
    _, _, bt1, bt2, ms, vs, _ = _moments_and_beta_t(rule, i, T, dx, states)
    out = _adam_direction(ms, vs, bt1, bt2, eps)
    torch._foreach_mul_(out, float(eta))
    if decay != 0:
        torch._foreach_add_(out, torch._foreach_mul(xs, float(decay)))
    return out


def _adabelief_flux012(rule, i, T, factor, xs, dx, states):
    # Flux 0.12 AdaBelief: st = β2 st + (1-β2) (dx - mt)^2 (no ϵ in st); step = η mt / (sqrt(st) + 1e-8):
    # NO bias correction at all.
    eta, eps = _eta(rule, T, factor), T(_FLUX012_EPS)
    b1, b2 = T(rule["beta"][0]), T(rule["beta"][1])
    ms = [st[f"{i}.m"] for st in states]
    ss = [st[f"{i}.s"] for st in states]
    _update_m(ms, dx, b1)
    _update_s(ss, dx, ms, b2)
    out = torch._foreach_mul(ms, float(eta))
    den = _sqrt_([s.clone() for s in ss])
    torch._foreach_add_(den, float(eps))
    torch._foreach_div_(out, den)
    return out


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
assert set(_APPLY) == set(RULE_DEFAULTS)
