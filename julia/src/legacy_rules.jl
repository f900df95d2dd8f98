# # The Flux 0.12 rules of the post, as Optimisers.jl rules
#
# Flux 0.12.4 (what the post ran) had `ADAMW` and `AdaBelief` with other formulas than today's
# Optimisers.jl. Both are written here as small `AbstractRule`s: `init` makes the state, `apply!`
# returns the new state and the step, and `update!` then does `x .= x .- step`. As in
# Optimisers.jl, the arithmetic is in the parameter's element type: hyperparameters are converted
# to it first, and the powers beta^t are a running product in that type.

const FLUX012_EPS = 1e-8  # Flux 0.12's fixed `ϵ`

"""
    ADAMW_flux012(eta = 1e-3, beta = (0.9, 0.999), decay = 0)

Flux 0.12's `ADAMW(η, β, decay) = Optimiser(ADAM(η, β), WeightDecay(decay))`: the step is
`eta * adam + decay * x`, so the decay is not scaled by `eta` (and with the default `decay = 0`
it is plain ADAM). ADAM's step: `mt / (1 - β1^t) / (sqrt(vt / (1 - β2^t)) + 1e-8) * eta`.
"""
struct ADAMW_flux012 <: Optimisers.AbstractRule
    eta::Float64
    beta::Tuple{Float64,Float64}
    decay::Float64
    function ADAMW_flux012(eta = 1e-3, beta = (0.9, 0.999), decay = 0.0)
        eta < 0 && throw(DomainError(eta, "the learning rate cannot be negative"))
        return new(eta, (beta[1], beta[2]), decay)
    end
end

Optimisers.init(o::ADAMW_flux012, x::AbstractArray{T}) where {T} = (zero(x), zero(x), T.(o.beta))

function Optimisers.apply!(o::ADAMW_flux012, state, x::AbstractArray{T}, dx) where {T}
    η, β, ϵ, λ = T(o.eta), T.(o.beta), T(FLUX012_EPS), T(o.decay)
    mt, vt, βt = state
    @. mt = β[1] * mt + (1 - β[1]) * dx
    @. vt = β[2] * vt + (1 - β[2]) * abs2(dx)
    step = @. mt / (1 - βt[1]) / (sqrt(vt / (1 - βt[2])) + ϵ) * η + λ * x
    return (mt, vt, βt .* β), step
end

"""
    AdaBelief_flux012(eta = 1e-3, beta = (0.9, 0.999))

Flux 0.12's `AdaBelief`: `mt = β1 mt + (1 - β1) g`, `st = β2 st + (1 - β2) (g - mt)^2` and the step
`eta * mt / (sqrt(st) + 1e-8)`: no bias correction, and no epsilon inside `st` (today's
`Optimisers.AdaBelief` has both).
"""
struct AdaBelief_flux012 <: Optimisers.AbstractRule
    eta::Float64
    beta::Tuple{Float64,Float64}
    function AdaBelief_flux012(eta = 1e-3, beta = (0.9, 0.999))
        eta < 0 && throw(DomainError(eta, "the learning rate cannot be negative"))
        return new(eta, (beta[1], beta[2]))
    end
end

Optimisers.init(o::AdaBelief_flux012, x::AbstractArray) = (zero(x), zero(x))

function Optimisers.apply!(o::AdaBelief_flux012, state, x::AbstractArray{T}, dx) where {T}
    η, β, ϵ = T(o.eta), T.(o.beta), T(FLUX012_EPS)
    mt, st = state
    @. mt = β[1] * mt + (1 - β[1]) * dx
    @. st = β[2] * st + (1 - β[2]) * abs2(dx - mt)
    step = @. η * mt / (sqrt(st) + ϵ)
    return (mt, st), step
end
