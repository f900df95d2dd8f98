# # Model and optimiser from specs
#
# A layer spec is a `Dict` with string keys, as in the Python package's `models.py`:
#
#     Dict("kind" => "conv", "kernel" => 5, "in" => 1, "out" => 6, "pad" => 0, "act" => "relu")
#     Dict("kind" => "maxpool", "size" => 2)      # Flux MaxPool((k, k)): stride k, no padding
#     Dict("kind" => "meanpool", "size" => 2)     # Flux MeanPool((k, k))
#     Dict("kind" => "flatten")                   # Flux.flatten
#     Dict("kind" => "dense", "in" => 256, "out" => 120, "act" => "relu")
#     Dict("kind" => "dropout", "p" => 0.3)
#
# A rule spec names an Optimisers.jl rule and every one of its fields, as `optim_spec.py` writes them
# (the defaults live there, in its table RULES, not here):
#
#     Dict("rule" => "Adam", "eta" => 3e-4, "beta" => [0.9, 0.999], "epsilon" => 1e-8)
#
# and a vector of rule specs is an `OptimiserChain`, applied left to right.

layerspec(pairs...) = Dict{String,Any}(pairs...)

"""
    LENET5

The post's LeNet-5 (model zoo `conv_mnist.jl`) as layer specs: 44,426 parameters. The default of
the standalone `train()`; the Python package hands every run its model as data, and a Python test
holds this copy equal to its `models.MODELS["lenet5"]`.
"""
const LENET5 = [
    layerspec("kind" => "conv", "kernel" => 5, "in" => 1, "out" => 6, "pad" => 0, "act" => "relu"),
    layerspec("kind" => "maxpool", "size" => 2),
    layerspec("kind" => "conv", "kernel" => 5, "in" => 6, "out" => 16, "pad" => 0, "act" => "relu"),
    layerspec("kind" => "maxpool", "size" => 2),
    layerspec("kind" => "flatten"),
    layerspec("kind" => "dense", "in" => 256, "out" => 120, "act" => "relu"),
    layerspec("kind" => "dense", "in" => 120, "out" => 84, "act" => "relu"),
    layerspec("kind" => "dense", "in" => 84, "out" => 10, "act" => "identity"),
]

const ACTIVATIONS = Dict("identity" => identity, "relu" => relu, "sigmoid" => sigmoid, "tanh" => tanh)

function activation(spec)
    name = spec["act"]
    haskey(ACTIVATIONS, name) && return ACTIVATIONS[name]
    known = join(sort!(collect(keys(ACTIVATIONS))), ", ")
    throw(ArgumentError("unknown activation $(repr(name)); known: $known"))
end

"""
    build_model(layers; weights = nothing, T = Float32) -> Chain

The `Chain` for the layer specs `layers`. Without `weights`, conv and dense layers get Flux's
own initialisation (`glorot_uniform` weights, zero biases) from the global RNG. With `weights`,
a collection of `(weight, bias)` pairs in Flux layout, one per conv or dense layer in order
(conv kernels `kW×kH×Cin×Cout`, dense weights `out×in`), the layers start from those.
`T = Float64` gives an `f64` model.
"""
function build_model(layers; weights = nothing, T::Type{<:AbstractFloat} = Float32)
    pending = weights === nothing ? nothing : collect(weights)
    model = Chain([build_layer(spec, pending, T) for spec in layers]...)
    if pending !== nothing && !isempty(pending)
        throw(ArgumentError("$(length(pending)) more (weight, bias) pairs than conv and dense layers"))
    end
    return T === Float64 ? f64(model) : model
end

# Each layer kind of the Python package's table (fluxlenet.models.LAYERS), built from its spec: one
# function a kind. `params` is the kind's (weight, bias) pair in Flux layout, or `nothing` for Flux's
# own initialisation (native mode); kinds without weights get `nothing`.
conv_layer(s, params, T) =
    params === nothing ? Conv((s["kernel"], s["kernel"]), s["in"] => s["out"], activation(s); pad = s["pad"]) :
                         Conv(Array{T}(params[1]), Vector{T}(vec(params[2])), activation(s); pad = s["pad"])

dense_layer(s, params, T) =
    params === nothing ? Dense(s["in"] => s["out"], activation(s)) :
                         Dense(Matrix{T}(params[1]), Vector{T}(vec(params[2])), activation(s))

const LAYER_BUILDERS = Dict{String,Function}(
    "conv" => conv_layer,
    "dense" => dense_layer,
    "maxpool" => (s, params, T) -> MaxPool((s["size"], s["size"])),
    "meanpool" => (s, params, T) -> MeanPool((s["size"], s["size"])),
    "flatten" => (s, params, T) -> Flux.flatten,
    "dropout" => (s, params, T) -> Dropout(Float64(s["p"])),
)

# The Flux layout of the weight of each kind that has one (fluxlenet.backends.flux_layout.FLUX_SHAPE).
const WEIGHT_SHAPES = Dict{String,Function}(
    "conv" => s -> (s["kernel"], s["kernel"], s["in"], s["out"]),
    "dense" => s -> (s["out"], s["in"]),
)

function build_layer(spec, pending, T)
    kind = spec["kind"]
    haskey(LAYER_BUILDERS, kind) ||
        throw(ArgumentError("unknown layer kind $(repr(kind)); known: $(join(sort(collect(keys(LAYER_BUILDERS))), ", "))"))
    params = pending === nothing || !haskey(WEIGHT_SHAPES, kind) ? nothing :
             next_params!(pending, spec, WEIGHT_SHAPES[kind](spec), spec["out"])
    return LAYER_BUILDERS[kind](spec, params, T)
end

function next_params!(pending, spec, wsize, nbias)
    isempty(pending) && throw(ArgumentError("no (weight, bias) pair left for the layer $spec"))
    w, b = popfirst!(pending)
    size(w) == wsize || throw(DimensionMismatch("the layer $spec needs a weight of size $wsize, got $(size(w))"))
    length(b) == nbias || throw(DimensionMismatch("the layer $spec needs $nbias biases, got $(length(b))"))
    return w, b
end

"""
    build_rule(rules) -> Optimisers.AbstractRule

The optimisation rule for a vector of rule specs: the rule itself for one spec, else an
`OptimiserChain` of them, left to right (the output of one is the gradient of the next).
Every field of a rule must be given (a missing one is an error, not a default of ours).
"""
function build_rule(rules::AbstractVector)
    isempty(rules) && throw(ArgumentError("an optimiser needs at least one rule"))
    built = [rule_from_spec(spec) for spec in rules]
    return length(built) == 1 ? only(built) : OptimiserChain(built...)
end

function rule_field(spec, key)
    haskey(spec, key) || throw(ArgumentError("rule $(spec["rule"]) needs its field $(repr(key)); a spec gives every field"))
    return spec[key]
end

rule_number(spec, key) = Float64(rule_field(spec, key))

function rule_beta(spec)
    b = rule_field(spec, "beta")
    length(b) == 2 || throw(ArgumentError("rule $(spec["rule"]): beta must be a pair, got $b"))
    return (Float64(b[1]), Float64(b[2]))
end

# Each rule of the Python package's table (fluxlenet.optim_spec.RULES), built from its spec: one line
# a rule, every field read from the spec.
const RULE_BUILDERS = Dict{String,Function}(
    "Descent" => s -> Descent(rule_number(s, "eta")),
    "Momentum" => s -> Momentum(rule_number(s, "eta"), rule_number(s, "rho")),
    "Nesterov" => s -> Nesterov(rule_number(s, "eta"), rule_number(s, "rho")),
    "Adam" => s -> Adam(rule_number(s, "eta"), rule_beta(s), rule_number(s, "epsilon")),
    "NAdam" => s -> NAdam(rule_number(s, "eta"), rule_beta(s), rule_number(s, "epsilon")),
    "AdamW" => s -> AdamW(rule_number(s, "eta"), rule_beta(s), rule_number(s, "lambda"), rule_number(s, "epsilon");
                          couple = Bool(rule_field(s, "couple"))),
    "AdaBelief" => s -> AdaBelief(rule_number(s, "eta"), rule_beta(s), rule_number(s, "epsilon")),
    "WeightDecay" => s -> WeightDecay(rule_number(s, "lambda")),
    "ADAMW_flux012" => s -> ADAMW_flux012(rule_number(s, "eta"), rule_beta(s), rule_number(s, "decay")),
    "AdaBelief_flux012" => s -> AdaBelief_flux012(rule_number(s, "eta"), rule_beta(s)),
)

function rule_from_spec(spec)
    name = spec["rule"]
    haskey(RULE_BUILDERS, name) ||
        throw(ArgumentError("unknown optimiser rule $(repr(name)); known: $(join(sort(collect(keys(RULE_BUILDERS))), ", "))"))
    return RULE_BUILDERS[name](spec)
end

rules_of(rule) = rule isa OptimiserChain ? rule.opts : (rule,)

"""
    learning_rate(rule) -> Float64 or nothing

The one `eta` of `rule` (or of the rules of a chain); `nothing` when there is none, an error when
there are several (a schedule scales one learning rate).
"""
function learning_rate(rule)
    etas = [r.eta for r in rules_of(rule) if hasproperty(r, :eta)]
    isempty(etas) && return nothing
    length(etas) == 1 || throw(ArgumentError("the chain $rule has $(length(etas)) learning rates; a schedule needs one"))
    return Float64(only(etas))
end
