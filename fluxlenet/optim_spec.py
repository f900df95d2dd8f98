"""Optimiser specs: chains of rules with the Optimisers.jl meaning, written once for both backends.

A rule is a JSON-ready dict; a chain is a list applied left to right (the output of one
rule is the gradient of the next), exactly like `Optimisers.OptimiserChain`:

    {"rule": "Descent", "eta": 0.1}
    {"rule": "Momentum", "eta": 0.01, "rho": 0.9}
    {"rule": "Nesterov", "eta": 0.001, "rho": 0.9}
    {"rule": "Adam", "eta": 1e-3, "beta": [0.9, 0.999], "epsilon": 1e-8}
    {"rule": "NAdam", "eta": 1e-3, "beta": [0.9, 0.999], "epsilon": 1e-8}
    {"rule": "AdamW", "eta": 1e-3, "beta": [0.9, 0.999], "lambda": 0.0, "epsilon": 1e-8, "couple": True}
    {"rule": "AdaBelief", "eta": 1e-3, "beta": [0.9, 0.999], "epsilon": 1e-16}
    {"rule": "WeightDecay", "lambda": 5e-4}
    # Flux 0.12.4, what the 2021 post ran:
    {"rule": "ADAMW_flux012", "eta": 1e-3, "beta": [0.9, 0.999], "decay": 0.0}   # eta*adam + decay*x
    {"rule": "AdaBelief_flux012", "eta": 1e-3, "beta": [0.9, 0.999]}            # no bias correction

A schedule multiplies every rule's `eta` by `lr_factor(step, ...)` before each step.
"""

from __future__ import annotations

BETA = [0.9, 0.999]

# The optimiser names a run can ask for, and what each becomes.
OPTIMISERS = {
    "Adam": "Optimisers.Adam (the post's ADAM: same formula)",
    "NAdam": "Optimisers.NAdam (the post's NADAM: same formula)",
    "AdamW": "Optimisers.AdamW(eta, beta, lambda; couple=true): decay scaled by eta",
    "AdaBelief": "Optimisers.AdaBelief (bias-corrected, epsilon 1e-16 inside s)",
    "ADAMW_flux012": "Flux 0.12 ADAMW(eta, beta, decay=0): eta*adam + decay*x; with decay 0 it equals ADAM",
    "AdaBelief_flux012": "Flux 0.12 AdaBelief: no bias correction, no epsilon inside s",
    "Descent": "Optimisers.Descent: plain SGD",
    "Momentum": "Optimisers.Momentum(eta, rho): v = rho v + eta g",
    "Nesterov": "Optimisers.Nesterov(eta, rho)",
}


def make_rule(name: str, eta: float, lambda_: float = 0.0, rho: float = 0.9) -> dict:
    """One rule dict for optimiser `name`. `lambda_` is used only by rules that carry their own decay."""
    if name in ("Adam", "NAdam"):
        return {"rule": name, "eta": eta, "beta": list(BETA), "epsilon": 1e-8}
    if name == "AdamW":
        return {"rule": "AdamW", "eta": eta, "beta": list(BETA), "lambda": lambda_, "epsilon": 1e-8, "couple": True}
    if name == "AdaBelief":
        return {"rule": "AdaBelief", "eta": eta, "beta": list(BETA), "epsilon": 1e-16}
    if name == "ADAMW_flux012":
        return {"rule": "ADAMW_flux012", "eta": eta, "beta": list(BETA), "decay": 0.0}
    if name == "AdaBelief_flux012":
        return {"rule": "AdaBelief_flux012", "eta": eta, "beta": list(BETA)}
    if name == "Descent":
        return {"rule": "Descent", "eta": eta}
    if name in ("Momentum", "Nesterov"):
        return {"rule": name, "eta": eta, "rho": rho}
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMISERS)}")


def optimiser_chain(name: str, eta: float, lambda_: float = 0.0, rho: float = 0.9) -> list[dict]:
    """The chain a run uses, as the post builds it.

    The post wraps its rule as `Optimiser(WeightDecay(lambda), opt)` when lambda > 0
    (coupled L2, applied before the rule); AdamW takes lambda as its own decoupled decay.
    """
    rule = make_rule(name, eta, lambda_, rho)
    if lambda_ > 0 and name != "AdamW":
        return [{"rule": "WeightDecay", "lambda": lambda_}, rule]
    return [rule]


def lr_factor(step: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
              milestones=(), gamma: float = 0.1) -> float:
    """Multiplier of eta for optimiser step `step` (0-based, counted over the whole run).

    Linear warm-up: (step + 1) / (warmup_epochs * steps_per_epoch), up to 1.
    Multi-step decay: gamma ** (number of milestones <= completed epochs), as torch's
    MultiStepLR stepped once per epoch (milestone 50 = from the 51st epoch on).
    """
    factor = 1.0
    if warmup_epochs > 0:
        factor = min(1.0, (step + 1) / (warmup_epochs * steps_per_epoch))
    completed_epochs = step // steps_per_epoch
    for m in milestones:
        if completed_epochs >= m:
            factor *= gamma
    return factor
