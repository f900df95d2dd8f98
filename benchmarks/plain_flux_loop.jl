# The post's loop in plain Flux 0.16, nothing around it: the yardstick of benchmarks/flux_startup.py.
#
#     julia --project=ENV -t N plain_flux_loop.jl IMAGES LABELS N_SAMPLES BATCHSIZE EPOCHS
#
# IMAGES: raw Float32 (28, 28, 1, N) in Julia's order, LABELS: raw Int64 (written by the benchmark
# from the same MNIST arrays fluxlenet trains on). LeNet-5, OptimiserChain(WeightDecay(1e-6),
# Adam(3e-4)) (the optimiser sweep's ADAMW run), shuffled batches; prints one line per epoch with
# the seconds of its training loop, as fluxlenet's log.csv counts them.

using Flux, Optimisers
using LinearAlgebra: BLAS

images, labels = ARGS[1], ARGS[2]
n, batchsize, epochs = parse.(Int, ARGS[3:5])
BLAS.set_num_threads(Threads.nthreads())

x = Array{Float32}(undef, 28, 28, 1, n)
read!(images, x)
y = Vector{Int64}(undef, n)
read!(labels, y)

model = Chain(Conv((5, 5), 1 => 6, relu), MaxPool((2, 2)), Conv((5, 5), 6 => 16, relu), MaxPool((2, 2)),
              Flux.flatten, Dense(256 => 120, relu), Dense(120 => 84, relu), Dense(84 => 10))
state = Flux.setup(OptimiserChain(WeightDecay(1f-6), Adam(3f-4)), model)
loader = Flux.DataLoader((x, Flux.onehotbatch(y, 0:9)); batchsize, shuffle = true)

for epoch in 1:epochs
    seconds = @elapsed for (xb, yb) in loader
        grads = Flux.gradient(m -> Flux.logitcrossentropy(m(xb), yb), model)
        Flux.update!(state, model, grads[1])
    end
    println("EPOCH $epoch $seconds")
end
