# # The post's loop
#
# Model zoo `conv_mnist.jl` in current Flux: `report(0)`, then for every epoch a progress bar over
# the training batches with gradient and update, `report(epoch)` every `infotime` epochs, and
# `BSON.@save joinpath(savepath, "model.bson") model epoch` (a CPU copy) every `checktime` epochs.

# We set default values for the arguments of `train`, as the post does:

Base.@kwdef mutable struct Args
    η = 3e-4             ## learning rate (when `rules` is nothing)
    λ = 0                ## L2 regulariser, as WeightDecay(λ) before the rule (when `rules` is nothing)
    batchsize = 128      ## batch size
    epochs = 10          ## number of epochs
    seed = 0             ## Random.seed!(seed): initial weights, shuffles, dropout (always seeded)
    infotime = 1         ## report every `infotime` epochs
    checktime = 5        ## save the model every `checktime` epochs; 0: no checkpoints
    savepath = "runs/"   ## where model.bson (and optimiser.bson, for resuming) are written
    layers = LENET5      ## the model, as layer specs (see `build_model`)
    rules = nothing      ## the optimiser, as rule specs (see `build_rule`); nothing: the post's ADAM(η)
    steps = nothing      ## a budget of optimiser steps instead of whole epochs (the last epoch cut short)
    T = Float32          ## element type of model, data and hyperparameters (Float64: an f64 run)
    trace_steps = 0      ## hand the loss and a parameter checksum of the first steps to `trace`
    flush_subnormals = false  ## set_zero_subnormals(true) on every Julia thread (faster L2 runs)
    evalbatch = 1000     ## batch size of the evaluation loaders
    progress = true      ## a progress bar per epoch
    resume = true        ## go on from savepath/model.bson + optimiser.bson when both are there
end

"""
    zero_subnormals!(on) -> Bool

`set_zero_subnormals(on)` on every Julia thread of the default pool and on this one: the flag is
per thread (BLAS's own threads keep theirs). False where the hardware cannot flush subnormals.
"""
function zero_subnormals!(on::Bool)
    ok = Threads.Atomic{Bool}(true)
    Threads.@threads :static for _ in 1:Threads.nthreads()
        set_zero_subnormals(on) || (ok[] = false)
    end
    return set_zero_subnormals(on) && ok[]
end

"""
    post_rules(args) -> rule specs

The post's optimiser: `ADAM(η)`, wrapped as `Optimiser(WeightDecay(λ), ADAM(η))` when `λ > 0`.
"""
function post_rules(args::Args)
    adam = Dict{String,Any}("rule" => "Adam", "eta" => Float64(args.η), "beta" => [0.9, 0.999], "epsilon" => 1e-8)
    return args.λ > 0 ? [Dict{String,Any}("rule" => "WeightDecay", "lambda" => Float64(args.λ)), adam] : [adam]
end

# ## Data
#
# Images come as `W×H×C×N` arrays (a `W×H×N` array, as MLDatasets gives MNIST, gets its channel
# dimension), labels as integers `0:nclasses-1`. They are copied once into plain arrays of `T`.
#
# Images holding NaN or Inf are refused, here and in the PyTorch backend alike (same message):
# NNlib's max pooling compares (`x > m`), so it drops a NaN that torch's max pooling propagates.
# The same data would give a finite epoch-0 loss in Flux and a NaN one in PyTorch, and "diverged"
# at different epochs; bad data is a data error on both sides instead.

function prepare(data, T, nclasses; split = "training")
    x, y = data
    x = ndims(x) == 3 ? reshape(x, size(x, 1), size(x, 2), 1, size(x, 3)) : x
    ndims(x) == 4 || throw(ArgumentError("images must be a W×H×C×N array, got size $(size(x))"))
    size(x, 4) == length(y) || throw(DimensionMismatch("$(size(x, 4)) images but $(length(y)) labels"))
    x = Array{T}(x)
    bad = count(!isfinite, x)
    if bad > 0
        sample = findfirst(!isfinite, x)[4] - 1  # 0-based, as Python counts
        throw(ArgumentError("the $split images hold $bad NaN or infinite value$(bad == 1 ? "" : "s") " *
                            "(the first in sample $sample): fix the data; no loss can be computed from them"))
    end
    return x, onehotbatch(Vector{Int}(vec(y)), 0:(nclasses - 1))
end

# An evaluation loader: batches of `evalbatch`, or one batch when the split is smaller (MLUtils
# warns once per loader when the batch size exceeds the number of observations).
eval_loader(data, evalbatch) = Flux.DataLoader(data; batchsize = min(evalbatch, size(data[1])[end]))

# A lockstep epoch: the batches are consecutive slices of a permutation chosen by the caller.
lockstep_batches(x, y, perm, batchsize) =
    ((x[:, :, :, idx], y[:, idx]) for idx in Iterators.partition(perm, batchsize))

# ## Loss and accuracy, as the post computes them
#
# The loss is the sum over batches of the batch mean times the batch size, over N (summed in
# Float64); the accuracy is in percent; both are rounded to 4 digits.

loss(ŷ, y) = logitcrossentropy(ŷ, y)

function eval_loss_accuracy(loader, model)
    l = 0.0
    acc = 0
    ntot = 0
    for (x, y) in loader
        ŷ = model(x)
        l += Float64(loss(ŷ, y)) * size(x)[end]
        acc += sum(onecold(ŷ) .== onecold(y))
        ntot += size(x)[end]
    end
    return (loss = l / ntot |> round4, acc = acc / ntot * 100 |> round4)
end

round4(x) = round(x, digits = 4)

num_params(model) = sum(length, Flux.trainables(model))

parameter_checksum(model) = sum(p -> sum(Float64, p), Flux.trainables(model))

print_report(epoch, train, test, valid, seconds, lr) =
    valid === nothing ? println("Epoch: $epoch   Train: $(train)   Test: $(test)") :
                        println("Epoch: $epoch   Train: $(train)   Valid: $(valid)   Test: $(test)")

# ## Checkpoints
#
# `model.bson` holds what the post saves, `model` (a CPU copy) and `epoch`; `optimiser.bson`
# beside it holds what resuming needs besides: the optimiser state, the step count and the
# state of the global RNG. Each file is written under another name, then renamed.

function save_checkpoint(savepath, model, opt_state, epoch, step; say = line -> @info(line))
    mkpath(savepath)
    modelpath = joinpath(savepath, "model.bson")
    statepath = joinpath(savepath, "optimiser.bson")
    try
        BSON.bson(statepath * ".part", Dict(:opt_state => opt_state, :epoch => epoch, :step => step,
                                            :rng => copy(Random.default_rng())))
        mv(statepath * ".part", statepath; force = true)
    catch err  ## the post's model.bson matters more than resuming: go on without it
        rm(statepath; force = true)
        rm(statepath * ".part"; force = true)
        say("Optimiser state not saved ($(sprint(showerror, err))); this run cannot be resumed")
    end
    let model = cpu(model)  ## return the model to the CPU before serialization
        tmp = modelpath * ".part"
        BSON.@save tmp model epoch
        mv(tmp, modelpath; force = true)
    end
    return modelpath
end

"""
    load_checkpoint(savepath) -> NamedTuple or nothing

`(; model, epoch, opt_state, step, rng)` from `savepath/model.bson` and `optimiser.bson`, or
`nothing` when either is missing or they are from different epochs (a run stopped between the
two writes). To load just the model, as the post would: `BSON.@load "model.bson" model epoch`.
"""
function load_checkpoint(savepath)
    modelpath = joinpath(savepath, "model.bson")
    statepath = joinpath(savepath, "optimiser.bson")
    (isfile(modelpath) && isfile(statepath)) || return nothing
    saved = BSON.load(modelpath, @__MODULE__)
    state = BSON.load(statepath, @__MODULE__)
    saved[:epoch] == state[:epoch] || return nothing
    return (model = saved[:model], epoch = saved[:epoch], opt_state = state[:opt_state],
            step = state[:step], rng = get(state, :rng, nothing))
end

"""
    train(train_data, test_data; kws...) -> :finished or :diverged

The post's loop. `train_data = (x, y)` and `test_data` as for `prepare`: images `W×H×C×N` (or
`W×H×N`), labels `0:nclasses-1`. Keywords: the fields of [`Args`](@ref), and

- `valid_data = nothing`: a third split, reported between train and test;
- `weights = nothing`: initial `(weight, bias)` pairs in Flux layout (see `build_model`);
- `permutations = nothing`: an `N×epochs` matrix, column `e` the 0-based sample order of epoch
  `e` (lockstep runs); without it the batches come from `Flux.DataLoader(...; shuffle = true)`;
- `lr_factors = nothing`: a schedule, the multiplier of the rule's `eta` for every optimiser step
  of the run (entry `s` for step `s`, counted over the whole run); without it `eta` throughout;
- `report(epoch, train, test, valid, seconds, lr)`: each report (`train = (loss = ..., acc = ...)`;
  `valid`, and `seconds` at epoch 0, may be `nothing`); prints the post's line by default;
- `say(line)`: other messages ("Model saved in ..."); `@info` by default;
- `started(epoch)`: called once, with 0 for a fresh run or the epoch a resumed run goes on from;
- `saved(epoch)`: after each checkpoint is written;
- `trace(step, loss, checksum)`: for each of the first `trace_steps` steps, the batch loss and
  the sum of all parameters (Float64) before the update;
- `poll()`: called every few steps (lets a host language notice an interrupt).

Returns `:diverged` as soon as a reported loss is NaN or infinite.
"""
function train(train_data, test_data; valid_data = nothing, weights = nothing, permutations = nothing,
               lr_factors = nothing, report = print_report, say = line -> @info(line), started = nothing,
               saved = nothing, trace = nothing, poll = nothing, kws...)
    args = Args(; kws...)
    T = args.T
    if !zero_subnormals!(args.flush_subnormals)
        say("NOTE: this CPU cannot flush subnormals; the run goes on without")
    end
    Random.seed!(args.seed)

    ## DATA
    layers = args.layers
    nclasses = last([spec["out"] for spec in layers if haskey(spec, "out")])
    xtrain, ytrain = prepare(train_data, T, nclasses)
    xtest, ytest = prepare(test_data, T, nclasses; split = "test")
    train_loader = Flux.DataLoader((xtrain, ytrain); batchsize = min(args.batchsize, size(xtrain, 4)), shuffle = true)
    eval_loaders = (train = eval_loader((xtrain, ytrain), args.evalbatch),
                    test = eval_loader((xtest, ytest), args.evalbatch),
                    valid = valid_data === nothing ? nothing :
                            eval_loader(prepare(valid_data, T, nclasses; split = "validation"), args.evalbatch))
    n = size(xtrain, 4)
    steps_per_epoch = cld(n, args.batchsize)
    total_epochs = args.steps === nothing ? args.epochs : cld(args.steps, steps_per_epoch)
    steps_in_epoch(epoch) = args.steps === nothing ? steps_per_epoch :
                            clamp(args.steps - (epoch - 1) * steps_per_epoch, 0, steps_per_epoch)
    if permutations !== nothing && size(permutations) != (n, total_epochs)
        throw(DimensionMismatch("permutations must be $n×$total_epochs (samples × epochs), got $(size(permutations))"))
    end
    total_steps = sum(steps_in_epoch, 1:total_epochs)
    if lr_factors !== nothing && length(lr_factors) < total_steps
        throw(DimensionMismatch("lr_factors must have one factor for each of the $total_steps steps, got $(length(lr_factors))"))
    end

    ## MODEL AND OPTIMISER
    rule = build_rule(args.rules === nothing ? post_rules(args) : args.rules)
    eta = learning_rate(rule)
    scheduled = lr_factors !== nothing
    scheduled && eta === nothing && throw(ArgumentError("a schedule needs a rule with a learning rate"))
    model, opt_state, start_epoch, step = initial_state(args, layers, weights, rule)
    started === nothing || started(start_epoch)
    if start_epoch > 0
        say("Resuming from the checkpoint of epoch $start_epoch ($(joinpath(args.savepath, "model.bson")))")
    end

    function report_epoch(epoch, seconds, step)
        train = eval_loss_accuracy(eval_loaders.train, model)
        test = eval_loss_accuracy(eval_loaders.test, model)
        valid = eval_loaders.valid === nothing ? nothing : eval_loss_accuracy(eval_loaders.valid, model)
        lr = eta === nothing ? nothing : scheduled ? eta * lr_factors[max(step, 1)] : eta  ## the last step's
        report(epoch, train, test, valid, seconds, lr)
        return all(isfinite, (train.loss, test.loss, (valid === nothing ? () : (valid.loss,))...))
    end

    ## TRAINING
    if start_epoch == 0
        report_epoch(0, nothing, step) || return :diverged
    end
    factor = NaN
    for epoch in (start_epoch + 1):total_epochs
        nsteps = steps_in_epoch(epoch)
        batches = permutations === nothing ? train_loader :
                  lockstep_batches(xtrain, ytrain, Int.(view(permutations, :, epoch)) .+ 1, args.batchsize)
        progress = Progress(nsteps; desc = "Epoch $epoch: ", enabled = args.progress)
        loss_sum = zero(T)
        started_at = time()
        for (x, y) in Iterators.take(batches, nsteps)
            if scheduled
                f = lr_factors[step + 1]
                if f != factor  # Optimisers.adjust! replaces eta and keeps the state
                    Optimisers.adjust!(opt_state, eta * f)
                    factor = f
                end
            end
            checksum = step < args.trace_steps ? parameter_checksum(model) : nothing
            l, grads = Flux.withgradient(m -> loss(m(x), y), model)
            step < args.trace_steps && trace !== nothing && trace(step + 1, Float64(l), checksum)
            Flux.update!(opt_state, model, grads[1])
            loss_sum += l
            step += 1
            poll !== nothing && step % 20 == 0 && poll()
            next!(progress)
        end
        finish!(progress)
        seconds = time() - started_at
        last_epoch = epoch == total_epochs

        ## Printing and logging; a NaN step loss forces a report, so the divergence is logged at once
        if epoch % args.infotime == 0 || last_epoch || !isfinite(loss_sum)
            report_epoch(epoch, seconds, step) || return :diverged
        end
        if args.checktime > 0 && (epoch % args.checktime == 0 || last_epoch)
            modelpath = save_checkpoint(args.savepath, model, opt_state, epoch, step; say)
            say("Model saved in \"$(modelpath)\"")
            saved === nothing || saved(epoch)
        end
    end
    return :finished
end

# A fresh model and optimiser state, or those of the checkpoint in `savepath`.
function initial_state(args, layers, weights, rule)
    if args.resume
        ckpt = load_checkpoint(args.savepath)
        if ckpt !== nothing
            ckpt.rng === nothing || copy!(Random.default_rng(), ckpt.rng)
            return ckpt.model, ckpt.opt_state, ckpt.epoch, ckpt.step
        end
    end
    model = build_model(layers; weights, T = args.T)
    return model, Flux.setup(rule, model), 0, 0
end
