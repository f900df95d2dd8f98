"""
    FluxLeNet

The training loop of the 2021 post "How my LeNet reaches 99% on MNIST" (the Flux model zoo's
`vision/conv_mnist/conv_mnist.jl`) in current Flux (0.16) and Optimisers (0.4).

The model and the optimiser are built from plain specs, vectors of `Dict`s: the same specs the
Python package `fluxlenet` hands to PyTorch, so both frameworks train the same network with the
same rule. The Flux 0.12 rules the post ran that current Optimisers no longer has are here as
`ADAMW_flux012` and `AdaBelief_flux012`.

    using FluxLeNet
    FluxLeNet.train((xtrain, ytrain), (xtest, ytest); epochs = 10)

`xtrain` is a `28×28×N` (or `W×H×C×N`) array of images, `ytrain` the labels `0:9`. See the README.
"""
module FluxLeNet

using Flux
using Flux: onehotbatch, onecold, logitcrossentropy
using Optimisers
using ProgressMeter: Progress, next!, finish!
using Random
using LinearAlgebra: BLAS
import BSON
import TOML

export Args, LENET5, build_model, build_rule, train, load_checkpoint,
       ADAMW_flux012, AdaBelief_flux012

include("specs.jl")         # the model and the optimiser from layer and rule specs
include("legacy_rules.jl")  # Flux 0.12's ADAMW and AdaBelief as Optimisers rules
include("train.jl")         # the post's loop
include("bridge.jl")        # the entry point the Python package calls
# A workload for Pkg's precompilation (the first epoch then compiles little), where the environment has
# PrecompileTools (fluxlenet's juliapkg.json and julia/Project.toml do; a Julia project of a user's own,
# which `include`s this file, may not).
@static if Base.find_package("PrecompileTools") !== nothing
    using PrecompileTools: @setup_workload, @compile_workload
    include("precompile.jl")
end

end # module
