# # The entry point of the Python package
#
# `fluxlenet/backends/flux.py` includes this package into a juliacall session and calls `run_job`
# with the run's settings as one TOML document (the keys of `fluxlenet.backends.flux_layout.job_spec`),
# the arrays as zero-copy views of NumPy memory already in Julia's index order, and Python
# callables for the run log. Nothing here depends on PythonCall: callables are called, arrays are
# read as `AbstractArray`s.

# How each key of a job document becomes a keyword of `train`. A key the document lacks keeps the
# default of `Args` (see train.jl): a job written by an older fluxlenet, or by hand, still runs.
# A key that is not here is refused, so a setting added in Python cannot be dropped on the way.
const JOB_KEYS = Dict{String,Tuple{Symbol,Any}}(
    "batchsize" => (:batchsize, Int), "epochs" => (:epochs, Int), "steps" => (:steps, Int),
    "seed" => (:seed, Int), "infotime" => (:infotime, Int), "checktime" => (:checktime, Int),
    "savepath" => (:savepath, String), "layers" => (:layers, identity), "rules" => (:rules, identity),
    "precision" => (:T, p -> p == "float64" ? Float64 : Float32),
    "trace_steps" => (:trace_steps, Int), "flush_subnormals" => (:flush_subnormals, Bool),
    "progress" => (:progress, Bool), "resume" => (:resume, Bool), "evalbatch" => (:evalbatch, Int))

const RUN_KEYS = ("mode",)  # read by `run_job` itself

"""
    args_from_job(job) -> NamedTuple

The keyword arguments of `train` for a job document (a parsed TOML `Dict`): the keys of
`JOB_KEYS` that the document has, converted; missing keys keep the defaults of `Args`.
"""
function args_from_job(job::AbstractDict)
    unknown = sort([k for k in keys(job) if !haskey(JOB_KEYS, k) && !(k in RUN_KEYS)])
    isempty(unknown) || throw(ArgumentError("unknown keys in the job document: $(join(unknown, ", "))"))
    return (; (JOB_KEYS[k][1] => JOB_KEYS[k][2](v) for (k, v) in job if haskey(JOB_KEYS, k))...)
end

"""
    run_job(job_toml, weights...; xtrain, ytrain, xtest, ytest, xvalid, yvalid, permutations, lr_factors,
            report, say, started, saved, trace, poll) -> "finished" or "diverged"

One run for the Python package, every argument but the job and the weights by keyword. Images are
`W×H×C×N`, labels `0:nclasses-1`; `xvalid`, `yvalid`, `lr_factors` (no schedule) and, in native mode,
`permutations` may be `nothing`; `weights` are `w1, b1, w2, b2, ...` in Flux layout (lockstep mode).
`report` receives plain numbers:
`report(epoch, train_loss, train_acc, test_loss, test_acc, valid_loss, valid_acc, seconds, lr)`.
"""
function run_job(job_toml::AbstractString, weights...; xtrain, ytrain, xtest, ytest, xvalid = nothing,
                 yvalid = nothing, permutations = nothing, lr_factors = nothing, report, say, started,
                 saved = nothing, trace = nothing, poll = nothing)
    job = TOML.parse(job_toml)
    lockstep = get(job, "mode", "lockstep") == "lockstep"
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
                   lr_factors = lr_factors === nothing ? nothing : Vector{Float64}(lr_factors),
                   report = report_numbers, say = line -> say(line), started, saved, trace, poll,
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
