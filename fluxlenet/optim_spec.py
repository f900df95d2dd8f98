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

The rules, their fields with defaults and the state they keep are the table RULES.
A schedule multiplies every rule's `eta` by `lr_factor(step, ...)` before each step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A rule as both backends apply it (torch_optim._APPLY, and rule_from_spec in julia/src/specs.jl)."""
    fields: dict            # field -> default: Optimisers.jl's (Flux 0.12's for the *_flux012 rules)
    state: tuple = ()       # what it keeps per parameter: tensors "m", "v", "s", "vel"; "beta_t": beta^t
    doc: str = ""           # one line, for `list` and the reports
    optimiser: bool = True  # a run can name it (WeightDecay comes into chains through lambda)


BETA = (0.9, 0.999)
ADAM_STATE = ("m", "v", "beta_t")

# Every rule, with the defaults of all its fields (the only copy: Julia is handed every field). Adding
# one: an entry here, its update function in torch_optim._APPLY, and its line in RULE_BUILDERS
# (julia/src/specs.jl).
RULES = {
    "Adam": Rule({"eta": 1e-3, "beta": BETA, "epsilon": 1e-8}, ADAM_STATE,
                 "Optimisers.Adam (the post's ADAM: same formula)"),
    "NAdam": Rule({"eta": 1e-3, "beta": BETA, "epsilon": 1e-8}, ADAM_STATE,
                  "Optimisers.NAdam (the post's NADAM: same formula)"),
    "AdamW": Rule({"eta": 1e-3, "beta": BETA, "lambda": 0.0, "epsilon": 1e-8, "couple": True}, ADAM_STATE,
                  "Optimisers.AdamW(eta, beta, lambda; couple=true): decay scaled by eta"),
    "AdaBelief": Rule({"eta": 1e-3, "beta": BETA, "epsilon": 1e-16}, ("m", "s", "beta_t"),
                      "Optimisers.AdaBelief (bias-corrected, epsilon 1e-16 inside s)"),
    "ADAMW_flux012": Rule({"eta": 1e-3, "beta": BETA, "decay": 0.0}, ADAM_STATE,
                          "Flux 0.12 ADAMW(eta, beta, decay=0): eta*adam + decay*x; with decay 0 it equals ADAM"),
    "AdaBelief_flux012": Rule({"eta": 1e-3, "beta": BETA}, ("m", "s"),
                              "Flux 0.12 AdaBelief: no bias correction, no epsilon inside s"),
    "Descent": Rule({"eta": 0.1}, (), "Optimisers.Descent: plain SGD"),
    "Momentum": Rule({"eta": 0.01, "rho": 0.9}, ("vel",), "Optimisers.Momentum(eta, rho): v = rho v + eta g"),
    "Nesterov": Rule({"eta": 0.001, "rho": 0.9}, ("vel",), "Optimisers.Nesterov(eta, rho)"),
    "WeightDecay": Rule({"lambda": 5e-4}, (), "Optimisers.WeightDecay(lambda): g + lambda x (coupled L2)",
                        optimiser=False),
}

# The optimiser names a run can ask for, and what each becomes.
OPTIMISERS = {name: rule.doc for name, rule in RULES.items() if rule.optimiser}


def make_rule(name: str, eta: float, lambda_: float = 0.0, rho: float = 0.9) -> dict:
    """One rule dict for optimiser `name`, every field filled in. `lambda_` goes only to a rule that
    carries its own decay (AdamW); the post's lambda is otherwise a WeightDecay before the rule."""
    if name not in OPTIMISERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMISERS)}")
    given = {"eta": eta, "rho": rho, "lambda": lambda_}
    rule = {"rule": name}
    for key, default in RULES[name].fields.items():
        rule[key] = given.get(key, list(default) if isinstance(default, tuple) else default)  # JSON: beta a list
    return rule


def optimiser_chain(name: str, eta: float, lambda_: float = 0.0, rho: float = 0.9) -> list[dict]:
    """The chain a run uses, as the post builds it.

    The post wraps its rule as `Optimiser(WeightDecay(lambda), opt)` when lambda > 0
    (coupled L2, applied before the rule); AdamW takes lambda as its own decoupled decay.
    """
    rule = make_rule(name, eta, lambda_, rho)
    if lambda_ > 0 and "lambda" not in rule:  # a rule with a decay field of its own (AdamW) took it
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
