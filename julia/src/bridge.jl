# # The entry point of the Python package
#
# `fluxlenet/backends/flux.py` includes this package into a juliacall session and calls `run_job`
# with the run's settings as one TOML document (the keys of `fluxlenet.backends.flux_layout.job_spec`),
# the arrays as zero-copy views of NumPy memory already in Julia's index order, and Python
# callables for the run log. Nothing here depends on PythonCall: callables are called, arrays are
# read as `AbstractArray`s.

"""
    args_from_job(job) -> NamedTuple

The keyword arguments of `train` for a job document (a parsed TOML `Dict`).
"""
function args_from_job(job::AbstractDict)
    return (batchsize = Int(job["batchsize"]), epochs = Int(job["epochs"]),
            steps = haskey(job, "steps") ? Int(job["steps"]) : nothing,
            seed = Int(job["seed"]), infotime = Int(job["infotime"]), checktime = Int(job["checktime"]),
            savepath = String(job["savepath"]),
            layers = job["layers"], rules = job["rules"],
            warmup_epochs = Float64(job["warmup_epochs"]),
            milestones = Int[m for m in job["milestones"]], gamma = Float64(job["gamma"]),
            T = job["precision"] == "float64" ? Float64 : Float32,
            trace_steps = Int(job["trace_steps"]),
            flush_subnormals = Bool(job["flush_subnormals"]),
            progress = Bool(job["progress"]), resume = Bool(job["resume"]))
end

"""
    run_job(job_toml, xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations,
            report, say, started, trace, poll, weights...) -> "finished" or "diverged"

One run for the Python package. Images are `W×H×C×N`, labels `0:nclasses-1`; `xvalid`, `yvalid`
and (in native mode) `permutations` may be `nothing`; `weights` are `w1, b1, w2, b2, ...` in Flux
layout (lockstep mode). `report` receives plain numbers:
`report(epoch, train_loss, train_acc, test_loss, test_acc, valid_loss, valid_acc, seconds, lr)`.
"""
function run_job(job_toml::AbstractString, xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations,
                 report, say, started, trace, poll, weights...)
    job = TOML.parse(job_toml)
    lockstep = job["mode"] == "lockstep"
    if lockstep && (permutations === nothing || isempty(weights))
        throw(ArgumentError("a lockstep run needs the initial weights and the permutations"))
    end
    isodd(length(weights)) && throw(ArgumentError("weights come in (weight, bias) pairs, got $(length(weights)) arrays"))
    weight_pairs = [(weights[i], weights[i + 1]) for i in 1:2:length(weights)]
    report_numbers(epoch, tr, te, va, seconds, lr) =
        report(epoch, tr.loss, tr.acc, te.loss, te.acc,
               va === nothing ? nothing : va.loss, va === nothing ? nothing : va.acc, seconds, lr)
    status = train((xtrain, ytrain), (xtest, ytest);
                   valid_data = xvalid === nothing ? nothing : (xvalid, yvalid),
                   weights = lockstep ? weight_pairs : nothing,
                   permutations = lockstep ? permutations : nothing,
                   report = report_numbers, say = line -> say(line), started, trace, poll,
                   args_from_job(job)...)
    return String(status)
end

"""
    versions() -> (julia, Flux, Optimisers, BSON)

Version strings of Julia and of the packages the loop runs on.
"""
versions() = (string(VERSION), string(pkgversion(Flux)), string(pkgversion(Optimisers)), string(pkgversion(BSON)))

"""
    set_threads!(n) -> (julia_threads, blas_threads)

Let BLAS use `n` threads (Julia's own thread count is fixed when Julia starts).
"""
function set_threads!(n::Integer)
    BLAS.set_num_threads(n)
    return (Threads.nthreads(), BLAS.get_num_threads())
end
