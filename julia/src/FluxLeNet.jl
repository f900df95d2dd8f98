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
using PrecompileTools: @setup_workload, @compile_workload
import BSON
import TOML

export Args, LENET5, build_model, build_rule, lr_factor, train, load_checkpoint,
       ADAMW_flux012, AdaBelief_flux012

include("specs.jl")         # the model and the optimiser from layer and rule specs
include("legacy_rules.jl")  # Flux 0.12's ADAMW and AdaBelief as Optimisers rules
include("train.jl")         # the post's loop
include("bridge.jl")        # the entry point the Python package calls
include("precompile.jl")    # a workload for Pkg's precompilation: the first epoch compiles little

end # module
