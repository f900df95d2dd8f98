# Tests of the FluxLeNet package: julia --project=julia -e 'using Pkg; Pkg.test()'

using FluxLeNet
using FluxLeNet: build_model, build_rule, train, load_checkpoint, LENET5
using Flux
using Flux: onehotbatch
using Optimisers
using Random
using Test
import BSON

const FL = FluxLeNet

spec(pairs...) = Dict{String,Any}(pairs...)
const BETA = "beta" => [0.9, 0.999]  # a spec gives every field of its rule (fluxlenet.optim_spec writes them)

conv(k, cin, cout; pad = 0, act = "relu") =
    spec("kind" => "conv", "kernel" => k, "in" => cin, "out" => cout, "pad" => pad, "act" => act)
dense(nin, nout; act = "identity") = spec("kind" => "dense", "in" => nin, "out" => nout, "act" => act)

# A true convolution written out: NNlib's `conv` (flipkernel = false) flips the kernel.
function true_conv(x, w, b, pad)
    kw, kh, cin, cout = size(w)
    xp = zeros(eltype(x), size(x, 1) + 2pad, size(x, 2) + 2pad, size(x, 3), size(x, 4))
    xp[(pad + 1):(pad + size(x, 1)), (pad + 1):(pad + size(x, 2)), :, :] .= x
    W, H = size(xp, 1) - kw + 1, size(xp, 2) - kh + 1
    y = zeros(eltype(x), W, H, cout, size(x, 4))
    for n in axes(x, 4), o in 1:cout, j in 1:H, i in 1:W
        s = b[o]
        for c in 1:cin, q in 1:kh, p in 1:kw
            s += w[kw + 1 - p, kh + 1 - q, c, o] * xp[i + p - 1, j + q - 1, c, n]
        end
        y[i, j, o, n] = s
    end
    return y
end

# Hand-written rules: x_{t} = x_{t-1} - step, with the formulas of shared/design/flux-torch-semantics.md.
function hand_rule(name, x0, grads; eta = 1e-3, beta = (0.9, 0.999), eps = 1e-8, lambda = 0.0, rho = 0.9,
                   couple = true, decay = 0.0)
    x = copy(x0)
    m, v, s, vel = zero(x), zero(x), zero(x), zero(x)
    b1, b2 = beta
    for (t, g) in enumerate(grads)
        if name == "Descent"
            step = eta .* g
        elseif name == "Momentum"
            vel = rho .* vel .+ eta .* g
            step = vel
        elseif name == "Nesterov"
            step = -rho^2 .* vel .+ (1 + rho) * eta .* g
            vel = rho .* vel .- eta .* g
        elseif name in ("Adam", "AdamW", "ADAMW_flux012", "WeightDecay+Adam")
            g = name == "WeightDecay+Adam" ? g .+ lambda .* x : g
            m = b1 .* m .+ (1 - b1) .* g
            v = b2 .* v .+ (1 - b2) .* g .^ 2
            d = (m ./ (1 - b1^t)) ./ (sqrt.(v ./ (1 - b2^t)) .+ eps)
            step = name == "AdamW" ? (couple ? eta .* (d .+ lambda .* x) : eta .* d .+ lambda .* x) :
                   name == "ADAMW_flux012" ? eta .* d .+ decay .* x : eta .* d
        elseif name == "NAdam"
            m = b1 .* m .+ (1 - b1) .* g
            v = b2 .* v .+ (1 - b2) .* g .^ 2
            step = eta .* (b1 .* m ./ (1 - b1^(t + 1)) .+ (1 - b1) .* g ./ (1 - b1^t)) ./
                   (sqrt.(b2 .* v ./ (1 - b2^t)) .+ eps)
        elseif name == "AdaBelief"
            m = b1 .* m .+ (1 - b1) .* g
            s = b2 .* s .+ (1 - b2) .* (g .- m) .^ 2 .+ eps
            step = eta .* (m ./ (1 - b1^t)) ./ (sqrt.(s ./ (1 - b2^t)) .+ eps)
        elseif name == "AdaBelief_flux012"
            m = b1 .* m .+ (1 - b1) .* g
            s = b2 .* s .+ (1 - b2) .* (g .- m) .^ 2
            step = eta .* m ./ (sqrt.(s) .+ 1e-8)
        else
            error("no hand formula for $name")
        end
        x = x .- step
    end
    return x
end

function run_rule(rule, x0, grads)
    x = copy(x0)
    state = Optimisers.setup(rule, x)
    for g in grads
        state, x = Optimisers.update!(state, x, g)
    end
    return x
end

tiny_data(n; seed = 1) = (Random.seed!(seed); (rand(Float32, 28, 28, 1, n), rand(0:9, n)))

@testset "FluxLeNet" begin

    @testset "model from layer specs" begin
        model = build_model(LENET5)
        @test FL.num_params(model) == 44_426
        @test size(model(rand(Float32, 28, 28, 1, 3))) == (10, 3)
        @test model[5] === Flux.flatten

        layers = [conv(5, 1, 6; pad = 2, act = "tanh"), spec("kind" => "meanpool", "size" => 2),
                  conv(5, 6, 16; act = "sigmoid"), spec("kind" => "maxpool", "size" => 2),
                  spec("kind" => "flatten"), spec("kind" => "dropout", "p" => 0.3),
                  dense(400, 84; act = "relu"), dense(84, 10)]
        m = build_model(layers)
        @test m[1] isa Conv && m[1].pad == (2, 2, 2, 2) && m[1].σ === tanh
        @test m[2] isa MeanPool && m[4] isa MaxPool && m[3].σ === sigmoid
        @test m[6] isa Dropout && m[6].p == 0.3
        @test m[7] isa Dense && m[7].σ === relu && m[8].σ === identity
        @test size(m(rand(Float32, 28, 28, 1, 2))) == (10, 2)

        @test eltype(build_model(LENET5; T = Float64)[1].weight) == Float64

        # given weights, in Flux layout, are used as they are; Conv is a true convolution
        Random.seed!(3)
        w, b = randn(Float32, 3, 3, 2, 4), randn(Float32, 4)
        wd, bd = randn(Float32, 5, 4 * 4 * 4), randn(Float32, 5)
        small = [conv(3, 2, 4; pad = 1, act = "identity"), spec("kind" => "maxpool", "size" => 2),
                 spec("kind" => "flatten"), dense(64, 5)]
        m = build_model(small; weights = [(w, b), (wd, bd)])
        @test m[1].weight == w && m[1].bias == b && m[4].weight == wd
        x = randn(Float32, 8, 8, 2, 3)
        @test m[1](x) ≈ true_conv(x, w, b, 1) rtol = 1e-5
        # flatten of W×H×C×N is column-major: feature w + W*(h-1) + W*H*(c-1)
        y = m[2](m[1](x))
        @test Flux.flatten(y)[1 + 4 * 1 + 16 * 2, 3] == y[1, 2, 3, 3]
        @test m(x) ≈ wd * reshape(y, 64, 3) .+ bd rtol = 1e-5

        @test_throws ArgumentError build_model([spec("kind" => "unknown")])
        @test_throws ArgumentError build_model([conv(5, 1, 6; act = "swish")])
        @test_throws DimensionMismatch build_model(small; weights = [(w[:, :, 1:1, :], b), (wd, bd)])
        @test_throws ArgumentError build_model(small; weights = [(w, b), (wd, bd), (wd, bd)])
    end

    @testset "rules from specs, against hand formulas" begin
        x0 = [0.5, -1.0, 2.0, 0.25]
        grads = [[0.1, -0.2, 0.3, 0.0], [0.05, 0.4, -0.1, 0.2], [-0.3, 0.2, 0.2, -0.1]]
        cases = [
            ([spec("rule" => "Descent", "eta" => 0.1)], ("Descent", (; eta = 0.1))),
            ([spec("rule" => "Momentum", "eta" => 0.01, "rho" => 0.8)], ("Momentum", (; eta = 0.01, rho = 0.8))),
            ([spec("rule" => "Nesterov", "eta" => 0.01, "rho" => 0.9)], ("Nesterov", (; eta = 0.01, rho = 0.9))),
            ([spec("rule" => "Adam", "eta" => 3e-4, "beta" => [0.9, 0.999], "epsilon" => 1e-8)], ("Adam", (; eta = 3e-4))),
            ([spec("rule" => "NAdam", "eta" => 1e-3, BETA, "epsilon" => 1e-8)], ("NAdam", (; eta = 1e-3))),
            ([spec("rule" => "AdamW", "eta" => 1e-3, BETA, "lambda" => 0.1, "epsilon" => 1e-8, "couple" => true)],
             ("AdamW", (; eta = 1e-3, lambda = 0.1, couple = true))),
            ([spec("rule" => "AdamW", "eta" => 1e-3, BETA, "lambda" => 0.1, "epsilon" => 1e-8, "couple" => false)],
             ("AdamW", (; eta = 1e-3, lambda = 0.1, couple = false))),
            ([spec("rule" => "AdaBelief", "eta" => 1e-3, BETA, "epsilon" => 1e-16)], ("AdaBelief", (; eta = 1e-3, eps = 1e-16))),
            ([spec("rule" => "WeightDecay", "lambda" => 1e-2), spec("rule" => "Adam", "eta" => 1e-3, BETA, "epsilon" => 1e-8)],
             ("WeightDecay+Adam", (; eta = 1e-3, lambda = 1e-2))),
            ([spec("rule" => "ADAMW_flux012", "eta" => 1e-3, "beta" => [0.9, 0.999], "decay" => 0.05)],
             ("ADAMW_flux012", (; eta = 1e-3, decay = 0.05))),
            ([spec("rule" => "AdaBelief_flux012", "eta" => 1e-3, "beta" => [0.8, 0.99])],
             ("AdaBelief_flux012", (; eta = 1e-3, beta = (0.8, 0.99)))),
        ]
        for (specs, (name, kw)) in cases
            @testset "$name $(kw)" begin
                @test run_rule(build_rule(specs), x0, grads) ≈ hand_rule(name, x0, grads; kw...) rtol = 1e-12
            end
        end

        adam = spec("rule" => "Adam", "eta" => 1e-3, BETA, "epsilon" => 1e-8)
        @test build_rule([spec("rule" => "WeightDecay", "lambda" => 1e-6), adam]) isa OptimiserChain
        @test build_rule([spec("rule" => "AdamW", "eta" => 1e-3, BETA, "lambda" => 0.0, "epsilon" => 1e-8,
                               "couple" => false)]).couple == false
        @test build_rule([spec("rule" => "AdaBelief", "eta" => 1e-3, BETA, "epsilon" => 1e-16)]).epsilon == 1e-16
        # no defaults of its own: a field missing from a spec is an error that names it
        err = try
            build_rule([spec("rule" => "AdaBelief", "eta" => 1e-3, BETA)])
        catch e
            e
        end
        @test err isa ArgumentError && occursin("\"epsilon\"", err.msg)
        @test_throws ArgumentError build_rule([spec("rule" => "RMSProp")])
        @test_throws ArgumentError build_rule(Dict{String,Any}[])
        # Flux 0.12 ADAMW with its default decay 0 is ADAM
        @test run_rule(ADAMW_flux012(1e-3), x0, grads) ≈ run_rule(Adam(1e-3), x0, grads) rtol = 1e-14

        # the legacy rules run in the parameters' element type and take adjust!
        x32 = Float32.(x0)
        state = Optimisers.setup(ADAMW_flux012(1e-3, (0.9, 0.999), 0.01), x32)
        state, x32 = Optimisers.update!(state, x32, Float32.(grads[1]))
        @test eltype(x32) == Float32 && eltype(state.state[1]) == Float32 && state.state[3] isa NTuple{2,Float32}
        Optimisers.adjust!(state, 0.5)
        @test state.rule.eta == 0.5 && state.rule.decay == 0.01
        state = Optimisers.setup(AdaBelief_flux012(), x32)
        Optimisers.adjust!(state, 0.25)
        @test state.rule.eta == 0.25 && state.rule.beta == (0.9, 0.999)
        @test_throws DomainError ADAMW_flux012(-1.0)
    end

    @testset "the learning rate a schedule scales" begin
        @test FL.learning_rate(build_rule([spec("rule" => "WeightDecay", "lambda" => 1e-6),
                                            spec("rule" => "Adam", "eta" => 3e-4, BETA, "epsilon" => 1e-8)])) == 3e-4
        @test FL.learning_rate(build_rule([spec("rule" => "WeightDecay", "lambda" => 1e-6)])) === nothing
    end

    @testset "flushing subnormals, on every thread" begin
        tiny = fill(1f-30, 4 * Threads.nthreads())
        if FL.zero_subnormals!(true)
            products = zeros(Float32, length(tiny))
            Threads.@threads :static for i in eachindex(tiny)
                products[i] = tiny[i] * 1f-10  # 1e-40 is subnormal in Float32
            end
            @test all(iszero, products)
        end
        @test FL.zero_subnormals!(false)
        @test tiny[1] * 1f-10 != 0
    end

    @testset "the loop on tiny random data" begin
        xtrain, ytrain = tiny_data(96)
        xtest, ytest = tiny_data(40; seed = 2)
        dir = mktempdir()
        reports, said, starts, traced = [], String[], Int[], []
        hooks = (report = (e, tr, te, va, s, lr) -> push!(reports, (; e, tr, te, va, s, lr)),
                 say = line -> push!(said, line), started = e -> push!(starts, e),
                 trace = (s, l, c) -> push!(traced, (s, l, c)))
        status = train((xtrain, ytrain), (xtest, ytest); epochs = 3, batchsize = 32, checktime = 2,
                       savepath = dir, progress = false, trace_steps = 4, seed = 0, hooks...)
        @test status == :finished
        @test [r.e for r in reports] == [0, 1, 2, 3]
        @test reports[1].s === nothing && reports[2].s isa Float64 && reports[1].va === nothing
        @test all(r -> r.lr == 3e-4, reports)
        @test starts == [0]
        @test [t[1] for t in traced] == 1:4
        # the checksum is taken before the step: the first one is that of the seeded initial model
        Random.seed!(0)
        @test traced[1][3] ≈ FL.parameter_checksum(build_model(LENET5)) rtol = 1e-12
        @test count(startswith("Model saved in"), said) == 2  # epoch 2, and the last epoch
        final = reports[end]
        @test 0 <= final.tr.acc <= 100 && final.tr.loss == round(final.tr.loss, digits = 4)

        # BSON round trip: the post's file loads back and predicts the same
        BSON.@load joinpath(dir, "model.bson") model epoch
        @test epoch == 3
        testloader = Flux.DataLoader((xtest, onehotbatch(ytest, 0:9)); batchsize = 1000)
        @test FL.eval_loss_accuracy(testloader, model) == final.te
        ckpt = load_checkpoint(dir)
        @test ckpt.epoch == 3 && ckpt.step == 9 && ckpt.rng isa Random.Xoshiro
        @test ckpt.model(xtest) == model(xtest)

        # resume: the same run asked for 5 epochs goes on from epoch 3
        empty!(reports); empty!(starts); empty!(said)
        status = train((xtrain, ytrain), (xtest, ytest); epochs = 5, batchsize = 32, checktime = 2,
                       savepath = dir, progress = false, seed = 0, hooks...)
        @test status == :finished && starts == [3] && [r.e for r in reports] == [4, 5]
        @test startswith(said[1], "Resuming from the checkpoint of epoch 3")
        @test load_checkpoint(dir).step == 15

        # lockstep: given weights and batch orders, two runs are identical
        weights = [(l.weight, l.bias) for l in build_model(LENET5) if l isa Union{Conv,Dense}]
        perms = hcat([randperm(96) .- 1 for _ in 1:2]...)
        runs = map(1:2) do _
            rs = []
            train((xtrain, ytrain), (xtest, ytest); epochs = 2, batchsize = 32, checktime = 0, progress = false,
                  resume = false, weights, permutations = perms, report = (e, tr, te, va, s, lr) -> push!(rs, (tr, te)))
            rs
        end
        @test runs[1] == runs[2]
        @test_throws DimensionMismatch train((xtrain, ytrain), (xtest, ytest); epochs = 3, checktime = 0,
                                             progress = false, resume = false, permutations = perms, report = (a...) -> nothing)

        # a step budget cuts the last epoch short; a valid split is reported
        empty!(traced); empty!(reports)
        status = train((xtrain, ytrain), (xtest, ytest); valid_data = tiny_data(20; seed = 3), steps = 5,
                       batchsize = 32, checktime = 0, progress = false, resume = false, trace_steps = 10, hooks...)
        @test status == :finished && [r.e for r in reports] == [0, 1, 2] && length(traced) == 5
        @test reports[end].va isa NamedTuple

        # a schedule (a warm-up over 2 epochs of 3 steps, as fluxlenet computes it) adjusts eta: the
        # reported lr is that of the last step taken; too few factors for the run's steps are refused
        empty!(reports)
        train((xtrain, ytrain), (xtest, ytest); epochs = 2, batchsize = 32, lr_factors = [(s + 1) / 6 for s in 0:5],
              checktime = 0, progress = false, resume = false, hooks...)
        @test [r.lr for r in reports] ≈ 3e-4 .* [1 / 6, 3 / 6, 6 / 6]
        @test_throws DimensionMismatch train((xtrain, ytrain), (xtest, ytest); epochs = 2, batchsize = 32,
                                             lr_factors = ones(5), checktime = 0, progress = false, resume = false,
                                             hooks...)

        # NaN or Inf in the data is refused before training (NNlib's max pooling would drop a NaN
        # that torch's propagates: the two backends would not agree on what it means)
        empty!(reports)
        xbad = copy(xtrain)
        xbad[1] = NaN32
        err = try
            train((xbad, ytrain), (xtest, ytest); epochs = 2, checktime = 0, progress = false, resume = false, hooks...)
        catch e
            e
        end
        @test err isa ArgumentError && occursin("training images hold 1 NaN or infinite value", err.msg)
        @test occursin("sample 0", err.msg) && isempty(reports)
        xbad = copy(xtest)
        xbad[end] = Inf32
        @test_throws ArgumentError train((xtrain, ytrain), (xbad, ytest); epochs = 1, checktime = 0,
                                         progress = false, resume = false, hooks...)
        # a diverging run (an enormous step) still ends as :diverged, its last report not finite
        empty!(reports)
        @test train((xtrain, ytrain), (xtest, ytest); epochs = 3, checktime = 0, progress = false, resume = false,
                    rules = [Dict{String,Any}("rule" => "Descent", "eta" => 1e30)], hooks...) == :diverged
        @test !isfinite(reports[end].tr.loss)

        # splits smaller than the evaluation batch: no MLUtils warning ("decreasing the batch-size")
        @test_logs min_level=Base.CoreLogging.Warn train((xtrain, ytrain), (xtest, ytest); epochs = 1,
                                                         batchsize = 500, checktime = 0, progress = false,
                                                         resume = false, report = (a...) -> nothing,
                                                         say = line -> nothing)
    end

    @testset "the Python entry point, with Julia callbacks" begin
        xtrain, ytrain = tiny_data(64)
        xtest, ytest = tiny_data(32; seed = 2)
        dir = mktempdir()
        job = """
        batchsize = 32
        epochs = 2
        seed = 0
        infotime = 1
        checktime = 1
        savepath = $(repr(dir))
        precision = "float64"
        mode = "lockstep"
        trace_steps = 2
        progress = false
        resume = true

        [[layers]]
        kind = "conv"
        kernel = 5
        in = 1
        out = 6
        pad = 0
        act = "relu"

        [[layers]]
        kind = "maxpool"
        size = 2

        [[layers]]
        kind = "flatten"

        [[layers]]
        kind = "dense"
        in = 864
        out = 10
        act = "identity"

        [[rules]]
        rule = "WeightDecay"
        lambda = 1e-06

        [[rules]]
        rule = "Adam"
        eta = 0.0003
        beta = [0.9, 0.999]
        epsilon = 1e-08
        """
        rows, said, traced, checkpoints = [], String[], [], Int[]
        weights = [randn(Float64, 5, 5, 1, 6), zeros(6), randn(Float64, 10, 864) ./ 30, zeros(10)]
        perms = hcat([randperm(64) .- 1 for _ in 1:2]...)
        status = FL.run_job(job, weights...; xtrain, ytrain, xtest, ytest, xvalid = nothing, yvalid = nothing,
                            permutations = perms, lr_factors = nothing, report = (a...) -> push!(rows, a),
                            say = line -> push!(said, line), started = e -> nothing, saved = e -> push!(checkpoints, e),
                            trace = (a...) -> push!(traced, a), poll = () -> nothing)
        @test status == "finished"
        @test [r[1] for r in rows] == [0, 1, 2] && all(r -> r[6] === nothing && r[7] === nothing, rows)
        @test all(r -> r[2] isa Float64 && r[9] == 3e-4, rows)
        @test length(traced) == 2 && count(startswith("Model saved in"), said) == 2 && checkpoints == [1, 2]
        BSON.@load joinpath(dir, "model.bson") model epoch
        @test epoch == 2 && eltype(model[1].weight) == Float64
        @test_throws ArgumentError FL.run_job(replace(job, "resume = true" => "resume = false"); xtrain, ytrain,
                                              xtest, ytest, report = (a...) -> nothing, say = println,
                                              started = e -> nothing)
        args = FL.args_from_job(FL.TOML.parse(job))
        @test args.T == Float64 && args.batchsize == 32 && !haskey(args, :flush_subnormals)
        # keys the document lacks keep Args' defaults (this job has no flush_subnormals); unknown keys are refused
        @test FL.Args(; args...).flush_subnormals == false
        @test_throws ArgumentError FL.args_from_job(FL.TOML.parse("learning_rate = 0.1\n" * job))
        @test length(FL.versions()) == 4
    end
end
