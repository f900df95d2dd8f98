"""Julia's MersenneTwister in NumPy, against the vectors Julia 1.10.5 wrote (../shared/reference)."""
from pathlib import Path

import numpy as np
import pytest

from fluxlenet.julia_random import DSFMT, MersenneTwister, seed_words

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "julia-mersenne-twister"
pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"Julia's test vectors not found at {VECTORS}")

# rand() after rand(Float32, 3), (383), (1001), rand(Float64, 5), from generated-by-julia.txt
RAND_AFTER = {0: 0.5396153011412066, 1: 0.9234976566470738, 7: 0.09726027063483156,
              123: 0.05210368761376638, 2021: 0.7877728212760646, 4294967295: 0.25692006347433494}


def vector(name: str) -> np.ndarray:
    return np.load(VECTORS / f"{name}.npy")


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes("F") == want.tobytes("F")


@pytest.mark.parametrize("seed", sorted(RAND_AFTER))
def test_every_path_of_one_generator_equals_julias(seed):
    """One generator through each path in Julia's order: cached Float32 (3), a fill that ends at
    the cache's edge (383), a fill straight from the state with a scalar tail (1001), Float64,
    rand(), shuffle! of two sizes and a 2x2 array in Julia's memory order."""
    rng = MersenneTwister(seed)
    assert same_bits(rng.rand_float32(3), vector(f"seed{seed}_f32_3"))
    assert same_bits(rng.rand_float32(383), vector(f"seed{seed}_f32_383"))
    assert same_bits(rng.rand_float32(1001), vector(f"seed{seed}_f32_1001"))
    assert same_bits(rng.rand_float64(5), vector(f"seed{seed}_f64_5"))
    assert rng.rand() == RAND_AFTER[seed]
    assert same_bits(rng.shuffle(np.arange(1, 11, dtype=np.int32)), vector(f"seed{seed}_shuffle_10"))
    assert same_bits(rng.shuffle(np.arange(1, 1001, dtype=np.int32)), vector(f"seed{seed}_shuffle_1000"))
    assert same_bits(rng.rand_float32(2, 2), vector(f"seed{seed}_f32_2x2"))


def test_the_posts_draws_equal_julias():
    """Random.seed!(42), the five glorot_uniform arrays of Flux 0.12, then 21 in-place shuffles."""
    rng = MersenneTwister(42)
    for layer, dims in (("conv1", (5, 5, 1, 6)), ("conv2", (5, 5, 6, 16)), ("dense1", (120, 256)),
                        ("dense2", (84, 120)), ("dense3", (10, 84))):
        assert same_bits(rng.rand_float32(*dims), vector(f"post42_{layer}_uniform")), layer
    orders = vector("post42_shuffles_60000x21")
    indices = np.arange(1, 60001, dtype=np.int32)
    for k in range(orders.shape[1]):
        rng.shuffle(indices)
        assert np.array_equal(indices, orders[:, k]), f"shuffle {k + 1}"
    assert rng.rand() == 0.6392832428096786


def test_the_stream_is_the_same_however_it_is_cut():
    """dSFMT's doubles do not depend on the sizes of the fills that take them (the block
    recursion must carry its state across fills), and lie in [1, 2)."""
    whole = DSFMT(seed_words(5)).fill(2000)
    cut = DSFMT(seed_words(5))
    parts = np.concatenate([cut.fill(382), cut.fill(1002), cut.fill(616)])
    assert np.array_equal(whole, parts)
    values = whole.view(np.float64)
    assert values.min() >= 1.0 and values.max() < 2.0


def test_a_seed_must_be_a_non_negative_integer():
    assert seed_words(2 ** 32 + 3) == [3, 1]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            MersenneTwister(bad)
