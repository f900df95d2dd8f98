# # Precompilation
#
# A few steps of the post's loop on a tiny random batch, run while Pkg precompiles FluxLeNet
# (`python -m fluxlenet setup-julia` does that once): Float32 with the rule chains of the post's
# sweeps, Float64 with Adam, lockstep inputs (given weights and batch orders, a step trace) and
# the DataLoader's own shuffling. The first epoch of a run then costs little more than the next
# ones. Nothing is written or printed. Outside precompilation (`include`d from source) nothing runs.

@setup_workload begin
    rule(name, fields...) = Dict{String,Any}("rule" => name, "eta" => 3e-4, "beta" => [0.9, 0.999], fields...)
    adam = rule("Adam", "epsilon" => 1e-8)
    decay = Dict{String,Any}("rule" => "WeightDecay", "lambda" => 1e-6)
    chains = [[adam], [decay, adam], [decay, rule("ADAMW_flux012", "decay" => 0.0)],
              [decay, rule("NAdam", "epsilon" => 1e-8)], [decay, rule("AdaBelief_flux012")]]
    quiet = (report = (a...) -> nothing, say = line -> nothing, started = e -> nothing,
             trace = (a...) -> nothing, poll = () -> nothing, checktime = 0, progress = false, resume = false)
    @compile_workload begin
        # A failure here must not fail the package's precompilation (and with it juliapkg's set-up and
        # every `import juliacall`): it only costs the first epoch its compilation.
        try
            for T in (Float32, Float64)
                x, y = rand(T, 28, 28, 1, 64), rand(0:9, 64)
                weights = [(l.weight, l.bias) for l in build_model(LENET5; T) if l isa Union{Conv,Dense}]
                permutations = reshape(Int32.(randperm(64) .- 1), 64, 1)
                for rules in (T === Float32 ? chains : chains[1:1])
                    train((x, y), (x, y); epochs = 1, batchsize = 32, T, rules, weights, permutations,
                          trace_steps = 2, quiet...)
                end
                train((x, y), (x, y); epochs = 1, batchsize = 32, T, rules = chains[1], quiet...)
            end
        catch err
            @warn "FluxLeNet's precompile workload failed; runs compile their first epoch instead" exception = err
        end
    end
end
