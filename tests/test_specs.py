"""Model specs, lockstep initialisation and the torch models built from them."""

import dataclasses

import numpy as np
import pytest
import torch

from fluxlenet import init, models
from fluxlenet.backends.torch_backend import build_model, load_weights, native_init, parametrised


def test_post_lenet5_has_the_zoo_parameter_count():
    layers = models.MODELS["lenet5"]["layers"]
    assert models.parameter_count(layers) == 44_426
    assert sum(p.numel() for p in build_model(layers).parameters()) == 44_426


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_spec_fits_its_input_and_torch_agrees_on_shapes(name):
    spec = models.check_model(name, models.MODELS[name]["input"])
    model = build_model(spec["layers"]).eval()
    out = model(torch.zeros(2, *spec["input"]))
    assert out.shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == models.parameter_count(spec["layers"])


def test_variants_and_cifar_layers_are_the_reports():
    assert models.output_shapes(models.MODELS["lenet-base"]["layers"], (1, 28, 28))[4] == (3136,)
    cifar = models.MODELS["cifar-cnn"]["layers"]
    assert models.output_shapes(cifar, (3, 32, 32))[6] == (1024,)
    assert [l["p"] for l in cifar if l["kind"] == "dropout"] == [0.3, 0.3]
    classic = models.MODELS["lenet5-1998"]["layers"]
    assert {l["kind"] for l in classic} >= {"meanpool"} and classic[0]["act"] == "tanh"


def test_a_model_that_does_not_fit_the_data_is_a_clear_error():
    with pytest.raises(models.SpecError, match="takes inputs of shape"):
        models.check_model("lenet5", (3, 32, 32))
    with pytest.raises(models.SpecError, match="unknown model"):
        models.get_model("resnet")
    with pytest.raises(models.SpecError, match="expects 300 features"):
        models.output_shapes([models.flatten(), models.dense(300, 10)], (1, 28, 28))


def test_glorot_uniform_bounds_fans_and_zero_biases():
    layers = models.MODELS["lenet5"]["layers"]
    params = init.initial_weights(layers, seed=3)
    conv1, dense1 = params[0][0], params[2][0]
    assert conv1.shape == (6, 1, 5, 5) and conv1.dtype == np.float32
    assert np.abs(conv1).max() <= np.sqrt(6 / (25 * 1 + 25 * 6))
    assert np.abs(conv1).max() > 0.9 * np.sqrt(6 / (25 * 1 + 25 * 6))
    assert dense1.shape == (120, 256) and np.abs(dense1).max() <= np.sqrt(6 / (256 + 120))
    assert all(not b.any() for _, b in params)
    # uniform: variance bound^2 / 3 over the 30,720 draws of dense1
    assert np.isclose(dense1.var(), (6 / 376) / 3, rtol=0.05)


def test_lockstep_inputs_are_fixed_by_the_seed():
    layers = models.MODELS["lenet5"]["layers"]
    a, b, c = (init.initial_weights(layers, s) for s in (1, 1, 2))
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])
    p1 = init.epoch_permutation(1, 1, 1000)
    assert np.array_equal(p1, init.epoch_permutation(1, 1, 1000))
    assert not np.array_equal(p1, init.epoch_permutation(1, 2, 1000))
    assert sorted(p1.tolist()) == list(range(1000))
    f64 = init.initial_weights(layers, 1, np.float64)
    assert f64[0][0].dtype == np.float64 and np.array_equal(f64[0][0], a[0][0].astype(np.float64))


def test_weights_load_into_torch_and_native_init_draws_the_same_distribution():
    layers = models.MODELS["lenet5"]["layers"]
    model = build_model(layers)
    params = init.initial_weights(layers, 5)
    load_weights(model, params)
    assert torch.equal(model[0].weight, torch.from_numpy(params[0][0]))
    torch.manual_seed(0)
    native_init(model, layers)
    w = model[0].weight.detach().numpy()
    assert not np.array_equal(w, params[0][0])
    assert np.abs(w).max() <= init.glorot_bound(layers[0]) + 1e-7
    assert not model[0].bias.detach().numpy().any()


def test_every_kind_with_weights_declares_an_init_that_every_scheme_has():
    from fluxlenet.backends.torch_backend import TORCH_INITS
    for name, kind in models.LAYERS.items():
        assert (kind.weight_init is not None) == (kind.weight_shape is not None), name
    for table in (init.NUMPY_INITS, init.JULIA_INITS, TORCH_INITS):
        assert set(table) == set(models.WEIGHT_INITS)


def test_a_kind_whose_weight_starts_at_one_is_one_table_entry(monkeypatch):
    """A kind's init is read from the table by every scheme: a dense layer declared "ones" starts at ones in
    the numpy and the julia scheme and in torch's native init, and draws nothing from the post's generator."""
    monkeypatch.setitem(models.LAYERS, "dense", dataclasses.replace(models.LAYERS["dense"], weight_init="ones"))
    layers = models.MODELS["lenet5"]["layers"]
    for rng in ("numpy", "julia"):
        params = init.initial_weights(layers, seed=42, rng=rng)
        assert all(np.array_equal(w, np.ones_like(w)) for w, _ in params[2:]), rng
        assert not np.array_equal(params[0][0], np.ones_like(params[0][0]))
    model = build_model(layers)
    native_init(model, layers)
    dense = parametrised(model)[2:]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in dense)
    assert not torch.equal(parametrised(model)[0].weight, torch.ones_like(parametrised(model)[0].weight))
    first_order = next(init.epoch_orders(layers, 42, 100, rng="julia"))
    monkeypatch.undo()
    assert not np.array_equal(first_order, next(init.epoch_orders(layers, 42, 100, rng="julia")))  # fewer draws


def test_every_layer_kind_has_its_entry_in_each_backends_tables():
    """A layer kind is one entry of models.LAYERS plus one per backend table; a kind missing from a table
    would only fail in a run of a model that uses it (the Flux ones only where Julia is)."""
    from fluxlenet.backends import flux_layout
    from fluxlenet.backends.torch_backend import TORCH_INITS, TORCH_LAYERS
    assert set(TORCH_LAYERS) == set(models.LAYER_KINDS)
    weighted = {kind for kind in models.LAYER_KINDS if models.LAYERS[kind].weight_shape}
    for table in (flux_layout.TO_FLUX, flux_layout.FROM_FLUX, flux_layout.FLUX_SHAPE):
        assert set(table) == weighted
    inits = {models.LAYERS[kind].weight_init for kind in weighted}
    assert inits <= set(TORCH_INITS) & set(init.NUMPY_INITS) & set(init.JULIA_INITS)
