"""Julia 1.10's `MersenneTwister` in NumPy: the generator behind the post's `Random.seed!(42)`.

The post's runs draw every random number (initial weights, batch order) from one Julia
MersenneTwister; replaying them in Python needs the same numbers bit for bit. This module computes
them (it reads no file):

- dSFMT-19937, the double-precision SIMD-oriented Fast Mersenne Twister of Saito and Matsumoto,
  ported from dSFMT.c and dSFMT-common.h (https://github.com/MersenneTwister-Lab/dSFMT, BSD-3-Clause,
  Copyright (c) 2007-2017 Mutsuo Saito, Makoto Matsumoto and Hiroshima University): `dsfmt_init_by_array`
  and the recursion of `gen_rand_array_c1o2`.
- How Julia 1.10 seeds it and turns its doubles into `rand()`, `rand(Float32, dims...)`,
  `rand(Float64, dims...)` and `shuffle!`, ported from stdlib/Random/src/RNGs.jl, generation.jl and misc.jl
  of Julia v1.10.5 (https://github.com/JuliaLang/julia, MIT License, Copyright (c) 2009-2024 Jeff
  Bezanson, Stefan Karpinski, Viral B. Shah and other contributors). Julia 1.11 and later seed a
  MersenneTwister differently (they hash the seed); 1.10 gives the post's (1.6's) stream.

dSFMT's output is one stream of doubles in [1, 2), the same however it is cut into fills: Julia
takes it either through a cache of 1002 doubles (scalars, short arrays) or, for arrays of at
least 382 doubles, straight from the state past the cache. Which path a draw takes changes which
numbers it gets, so each path is kept as Julia has it.
"""
from __future__ import annotations

import numpy as np

# dSFMT-19937 parameters (dSFMT-params19937.h, dSFMT.h)
N = (19937 - 128) // 104 + 1   # 191 128-bit words of state (plus the "lung")
POS1, SL1, SR = 117, 19, 12
MSK = np.array([0x000FFAFFFFFFFB3F, 0x000FFDFFFC90FFFD], dtype=np.uint64)
FIX = (0x90014964B32F4329, 0x3B8D12AC548A7C7A)
PCV = (0x3D84E1AC0DC82880, 0x0000000000000001)
LOW_MASK, HIGH_CONST = 0x000FFFFFFFFFFFFF, 0x3FF0000000000000
MIN_FILL = 2 * N               # dsfmt_get_min_array_size(): 382 doubles
CACHE = 1002                   # Julia's MT_CACHE_F: doubles in a MersenneTwister's cache

_U64 = np.uint64
_M32 = 0xFFFFFFFF


def _init_by_array(key: list[int]) -> np.ndarray:
    """dsfmt_init_by_array: the state, (N + 1) x 2 words (the last row is the lung)."""
    size = (N + 1) * 4
    lag = 11                                  # size >= 623
    mid = (size - lag) // 2
    s = [0x8B8B8B8B] * size                   # memset(status, 0x8b, ...)

    def ini1(x):
        return ((x ^ (x >> 27)) * 1664525) & _M32

    def ini2(x):
        return ((x ^ (x >> 27)) * 1566083941) & _M32

    count = max(len(key) + 1, size)
    r = ini1(s[0] ^ s[mid % size] ^ s[(size - 1) % size])
    s[mid % size] = (s[mid % size] + r) & _M32
    r = (r + len(key)) & _M32
    s[(mid + lag) % size] = (s[(mid + lag) % size] + r) & _M32
    s[0] = r
    count -= 1
    i = 1
    for j in range(count):
        r = ini1(s[i] ^ s[(i + mid) % size] ^ s[(i + size - 1) % size])
        s[(i + mid) % size] = (s[(i + mid) % size] + r) & _M32
        r = (r + (key[j] if j < len(key) else 0) + i) & _M32
        s[(i + mid + lag) % size] = (s[(i + mid + lag) % size] + r) & _M32
        s[i] = r
        i = (i + 1) % size
    for _ in range(size):
        r = ini2((s[i] + s[(i + mid) % size] + s[(i + size - 1) % size]) & _M32)
        s[(i + mid) % size] ^= r
        r = (r - i) & _M32
        s[(i + mid + lag) % size] ^= r
        s[i] = r
        i = (i + 1) % size
    state = np.array(s, dtype=np.uint32).view(np.uint64).reshape(N + 1, 2).copy()  # little-endian words
    state[:N] = (state[:N] & _U64(LOW_MASK)) | _U64(HIGH_CONST)     # initial_mask
    inner = ((int(state[N, 0]) ^ FIX[0]) & PCV[0]) ^ ((int(state[N, 1]) ^ FIX[1]) & PCV[1])
    if bin(inner).count("1") % 2 == 0:                               # period_certification
        state[N, 1] ^= _U64(1)
    return state


class DSFMT:
    """The dSFMT-19937 stream: `fill(n)` gives its next n doubles in [1, 2), as their bits (uint64)."""

    def __init__(self, key: list[int]):
        state = _init_by_array(key)
        self._recent = state[:N].copy()   # the last N 128-bit words of the stream (dSFMT's status)
        self._lung = state[N].copy()

    def fill(self, n: int) -> np.ndarray:
        assert n % 2 == 0 and n >= 0
        words = n // 2
        x = np.empty((N + words, 2), dtype=np.uint64)   # the recent words, then the new ones
        x[:N] = self._recent
        lung = self._lung
        # do_recursion: out[k] from x[k], x[k + POS1] and the lung. Any N - POS1 outputs in a row read
        # only words already made, so they are computed together. The lung's update is
        # lung = P(lung) ^ c, with c = (a << SL1) ^ b and P (swap the words, rotate each by 32 bits) an
        # involution; so P^t(lung_t) is a running xor of P^t(c_t), which numpy accumulates.
        block = N - POS1
        for k in range(0, words, block):
            m = min(block, words - k)
            a = x[k:k + m]
            c = (a << _U64(SL1)) ^ x[k + POS1:k + POS1 + m]
            odd = slice(1, None, 2)
            c[odd] = _rot(c[odd])
            c[0] ^= _rot(lung)                     # P(lung before the block)
            q = np.bitwise_xor.accumulate(c, axis=0)
            q[odd] = _rot(q[odd])                  # the lungs
            x[N + k:N + k + m] = (q >> _U64(SR)) ^ (q & MSK) ^ a
            lung = q[m - 1].copy()
        self._recent = x[words:].copy()
        self._lung = lung
        return x[N:].reshape(-1)


def _rot(w: np.ndarray) -> np.ndarray:
    """P of a 128-bit word (or rows of them): (L0, L1) -> (rot32(L1), rot32(L0))."""
    w = w[..., ::-1]
    return (w >> _U64(32)) | (w << _U64(32))


def seed_words(seed: int) -> list[int]:
    """Julia's make_seed(n): n in 32-bit words, least significant first."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"a MersenneTwister seed is an integer >= 0, got {seed!r}")
    seed, words = int(seed), []
    while True:
        words.append(seed & _M32)
        seed >>= 32
        if seed == 0:
            return words


class MersenneTwister:
    """`Random.MersenneTwister(seed)` of Julia 1.10: the same numbers, in the same order, by the same
    calls. Arrays come in Julia's shape and memory order (Fortran), values equal element by element."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._dsfmt = DSFMT(seed_words(seed))
        self._vals = np.zeros(CACHE, dtype=np.uint64)
        self._idx = CACHE                          # the cache starts empty

    # -- the cache of doubles (RNGs.jl: gen_rand, mt_pop!, _rand_max383!)

    def _refill(self) -> None:
        self._vals = self._dsfmt.fill(CACHE)
        self._idx = 0

    def _next_bits(self) -> int:
        """The bits of the next double in [1, 2) of the cache (rand(r, UInt52Raw()))."""
        if self._idx == CACHE:
            self._refill()
        self._idx += 1
        return int(self._vals[self._idx - 1])

    def _cached(self, n: int) -> np.ndarray:
        """_rand_max383!: n <= 383 doubles from the cache, refilling it at most once."""
        if self._idx == CACHE:
            self._refill()                         # even for n == 0
        m = min(n, CACHE - self._idx)
        out = self._vals[self._idx:self._idx + m]
        if m == n:
            self._idx += m
            return out.copy()
        self._refill()
        self._idx = n - m
        return np.concatenate([out, self._vals[:n - m]])

    def _doubles(self, n: int) -> np.ndarray:
        """rand!(r, ::UnsafeView{Float64}, CloseOpen12()): n doubles' bits. Past dSFMT's minimum fill
        size Julia fills all but the last 2 or 3 straight from the state (the cache keeps what it
        holds), then draws those from the cache."""
        n2 = int((n - 2) / 2) * 2                  # Julia's (n-2) ÷ 2 * 2 truncates toward zero
        if n2 < MIN_FILL:
            return self._cached(n)
        head = self._dsfmt.fill(n2)
        tail = np.array([self._next_bits() for _ in range(n - n2)], dtype=np.uint64)
        return np.concatenate([head, tail])

    # -- what users call

    def rand(self) -> float:
        """rand(rng): one Float64 in [0, 1)."""
        return float(np.uint64(self._next_bits()).view(np.float64)) - 1.0

    def rand_float64(self, *dims: int) -> np.ndarray:
        """rand(rng, Float64, dims...)."""
        n = int(np.prod(dims, dtype=np.int64))
        return _shaped(self._doubles(n).view(np.float64) - 1.0, dims)

    def rand_float32(self, *dims: int) -> np.ndarray:
        """rand(rng, Float32, dims...): RNGs.jl's rand!(::MersenneTwister, ::Array{Float32}). Each 16
        bytes of the array are made from two doubles, as one UInt128 u: u ^= u << 26, then each
        Float32's mantissa masked into [1, 2); the n % 4 elements left over are scalar draws."""
        n = int(np.prod(dims, dtype=np.int64))
        n128 = n // 4
        d = self._doubles(2 * n128)
        lo, hi = d[0::2], d[1::2]
        hi = hi ^ ((hi << _U64(26)) | (lo >> _U64(38)))
        lo = lo ^ (lo << _U64(26))
        words = np.empty(2 * n128, dtype=np.uint64)
        words[0::2], words[1::2] = lo, hi
        words = (words & _U64(0x007FFFFF007FFFFF)) | _U64(0x3F8000003F800000)
        ones_to_twos = np.empty(n, dtype=np.uint32)
        ones_to_twos[:4 * n128] = words.view(np.uint32)
        for i in range(4 * n128, n):               # rand(r, Float32) + 1: low 32 bits of a double
            ones_to_twos[i] = (self._next_bits() & 0x007FFFFF) | 0x3F800000
        return _shaped(ones_to_twos.view(np.float32) - np.float32(1), dims)

    def shuffle(self, a: np.ndarray) -> np.ndarray:
        """shuffle!(rng, a) in place (misc.jl): Fisher-Yates from the end, each index drawn as the low
        bits of a cached double under a mask halved as i falls, redrawn while out of range."""
        n = len(a)
        if n <= 1:
            return a
        swaps = self._swap_indices(n)
        items = a.tolist()
        for i, j in zip(range(n - 1, 0, -1), swaps):
            items[i], items[j] = items[j], items[i]
        a[:] = items
        return a

    def _swap_indices(self, n: int) -> list[int]:
        """0-based j for i = n-1 down to 1, as shuffle! draws them (they do not depend on the array)."""
        mask = (1 << (n - 1).bit_length()) - 1       # nextpow(2, n) - 1
        out = []
        vals, idx = self._vals.tolist(), self._idx   # Python ints: this loop is the slow part
        for i in range(n, 1, -1):
            if mask >> 1 == i:
                mask >>= 1
            while True:
                if idx == CACHE:
                    self._refill()
                    vals, idx = self._vals.tolist(), 0
                x = vals[idx] & mask
                idx += 1
                if x <= i - 1:
                    break
            out.append(x)
        self._idx = idx
        return out


def _shaped(flat: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    return flat.reshape(dims, order="F") if dims else flat
