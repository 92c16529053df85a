"""MetaOptimizer: update rule, meta-gradient, modes, saving, errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_metaopt import LayerGroups, MetaOptimizer
from keras_metaopt.testing import random_batches, tiny_classifier, train

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LOSS64 = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")
EMBEDDINGS = ("token_embedding", "position_embedding", "segment_embedding")


def _train(model, optimizer, batches, variables=None):
    """Plain GradientTape steps; `variables` defaults to all trainable ones."""
    train(model, optimizer, batches, variables, LOSS)


def _not_embeddings(model):
    return [
        v
        for v in model.trainable_variables
        if not v.path.startswith(EMBEDDINGS + ("embeddings_layer_norm",))
    ]


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


def test_rate_one_reproduces_adam_exactly():
    batches = random_batches(5)
    adam_model = tiny_classifier()
    _train(
        adam_model, keras.optimizers.Adam(1e-2), batches, _not_embeddings(adam_model)
    )
    meta_model = tiny_classifier()
    _train(
        meta_model,
        MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=30.0),
        batches,
    )
    for a, b in zip(_weights(adam_model), _weights(meta_model)):
        np.testing.assert_array_equal(a, b)
    # And the update really moved the weights.
    assert (
        max(
            np.abs(a - b).max()
            for a, b in zip(_weights(tiny_classifier()), _weights(meta_model))
        )
        > 1e-3
    )


def test_rate_zero_group_and_frozen_group_do_not_move():
    model = tiny_classifier()
    before = {v.path: v.numpy().copy() for v in model.weights}
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(1e-2),
        initial_phi={
            "transformer_layer_0": -30.0,
            "transformer_layer_1": 0.0,
            "head": 0.0,
        },
    )
    _train(model, optimizer, random_batches(5))
    for v in model.weights:
        delta = np.abs(v.numpy() - before[v.path]).max()
        if v.path.startswith(EMBEDDINGS + ("embeddings_layer_norm",)):
            assert delta == 0.0, v.path  # frozen: bit-identical
        elif v.path.startswith("transformer_layer_0/"):
            assert delta < 1e-12, v.path  # λ = sigmoid(-30) ≈ 1e-13
        elif v.path.startswith("transformer_layer_1/self_attention_layer/query/kernel"):
            assert delta > 1e-4, v.path
    # Frozen variables get no slots, in the base optimizer or here.
    assert len(optimizer.base_optimizer._trainable_variables) == len(
        _not_embeddings(model)
    )


def test_rate_half_halves_every_step_of_a_linear_model():
    # SGD on a linear layer: the scaled step is exactly λ × the SGD step.
    layer = keras.layers.Dense(2, name="logits")
    layer.build((None, 3))
    w0 = layer.kernel.numpy().copy()
    grad = np.ones((3, 2), "float32")
    optimizer = MetaOptimizer(
        keras.optimizers.SGD(0.1), LayerGroups(frozen=()), initial_rates={"head": 0.25}
    )
    optimizer.apply([grad, np.zeros(2, "float32")], [layer.kernel, layer.bias])
    np.testing.assert_allclose(layer.kernel.numpy(), w0 - 0.25 * 0.1 * grad, atol=1e-7)
    np.testing.assert_allclose(optimizer._update_sums[0].numpy(), 0.1 * grad, atol=1e-7)


def test_phi_moves_only_through_meta_updates():
    model = tiny_classifier()
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=[0.1, -0.2, 0.3])
    _train(model, optimizer, random_batches(3))
    np.testing.assert_array_equal(optimizer.phi.numpy(), np.float32([0.1, -0.2, 0.3]))
    assert all(v is not optimizer.phi for v in optimizer.base_optimizer.variables)
    assert any(v is optimizer.phi for v in optimizer.variables)
    features, labels = random_batches(1, seed=9)[0]
    with tf.GradientTape() as tape:
        loss = LOSS(labels, model(features))
    grads = tape.gradient(loss, model.trainable_variables)
    meta_grad = optimizer.apply_meta_gradient(grads, model.trainable_variables)
    # Keras Adam's first step: lr·√(1−β₂)·g / (√(1−β₂)·|g| + ε), lr = 0.05.
    g, c = meta_grad.numpy().astype("float64"), np.sqrt(1 - 0.999)
    expected = np.array([0.1, -0.2, 0.3]) - 0.05 * c * g / (c * np.abs(g) + 1e-7)
    np.testing.assert_allclose(optimizer.phi.numpy(), expected, atol=1e-6)
    assert all(float(np.abs(s.numpy()).max()) == 0.0 for s in optimizer._update_sums)


def _first_order_objective(model, optimizer, features, labels, loss_fn):
    """L_test(θ_0 − σ(φ_g)·ΣΔθ) as a function of φ, via stateless_call."""
    lam = tf.sigmoid(optimizer.phi).numpy()
    index = {id(v): i for i, v in enumerate(optimizer._trainable_variables)}
    start, sums, groups = [], [], []
    for v in model.trainable_variables:
        i = index.get(id(v))
        if i is None:
            start.append(v.value), sums.append(None), groups.append(None)
            continue
        s = optimizer._update_sums[i].value
        g = optimizer._segment_ids[i]
        start.append(v.value + lam[g] * s), sums.append(s), groups.append(g)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def objective(phi):
        rate = tf.sigmoid(phi)
        weights = [
            w if s is None else w - rate[g] * s for w, s, g in zip(start, sums, groups)
        ]
        logits, _ = model.stateless_call(
            weights, non_trainable, features, training=False
        )
        return loss_fn(labels, logits)

    return objective


def test_meta_gradient_matches_tape_and_finite_differences():
    model = tiny_classifier(dtype="float64")
    optimizer = MetaOptimizer(
        keras.optimizers.Adam(1e-2), initial_phi=[0.4, -0.3, 1.1], phi_optimizer=None
    )
    _train(model, optimizer, random_batches(3))
    features, labels = random_batches(1, seed=7)[0]
    with tf.GradientTape() as tape:
        loss = LOSS64(labels, model(features, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    closed_form = optimizer.meta_gradient(grads, model.trainable_variables).numpy()

    objective = _first_order_objective(model, optimizer, features, labels, LOSS64)
    phi = tf.constant(optimizer.phi.numpy(), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(phi)
        value = objective(phi)
    np.testing.assert_allclose(float(value), float(loss), rtol=1e-10)  # θ_L rebuilt
    direct = tape.gradient(value, phi).numpy()
    assert np.linalg.norm(closed_form - direct) <= 1e-5 * np.linalg.norm(direct)

    eps = 1e-5
    finite = np.array(
        [
            (float(objective(phi + eps * e)) - float(objective(phi - eps * e)))
            / (2 * eps)
            for e in np.eye(3)
        ]
    )
    assert np.linalg.norm(closed_form - finite) <= 1e-5 * np.linalg.norm(finite)
    assert np.abs(closed_form).min() > 0


def test_shared_mode_has_one_phi_and_sums_all_groups():
    batches = random_batches(3)
    grads_at = random_batches(1, seed=5)[0]
    results = {}
    for mode in ("layerwise", "shared"):
        model = tiny_classifier()
        optimizer = MetaOptimizer(
            keras.optimizers.Adam(1e-2), mode=mode, initial_phi=0.0
        )
        _train(model, optimizer, batches)
        with tf.GradientTape() as tape:
            loss = LOSS(grads_at[1], model(grads_at[0]))
        grads = tape.gradient(loss, model.trainable_variables)
        results[mode] = optimizer.meta_gradient(
            grads, model.trainable_variables
        ).numpy()
        assert optimizer.phi.shape == ((1,) if mode == "shared" else (3,))
    # Same trajectory (all φ = 0); the shared gradient is the sum over groups.
    np.testing.assert_allclose(
        results["shared"], [results["layerwise"].sum()], rtol=1e-5
    )


def test_adamw_rate_one_matches_adamw_and_decay_is_scaled():
    batches = random_batches(4)
    reference = tiny_classifier()
    _train(
        reference,
        keras.optimizers.AdamW(1e-2, weight_decay=0.1),
        batches,
        _not_embeddings(reference),
    )
    model = tiny_classifier()
    _train(
        model,
        MetaOptimizer(keras.optimizers.AdamW(1e-2, weight_decay=0.1), initial_phi=30.0),
        batches,
    )
    for a, b in zip(_weights(reference), _weights(model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # λ ≈ 0: no decay either.
    model = tiny_classifier()
    before = _weights(model)
    _train(
        model,
        MetaOptimizer(
            keras.optimizers.AdamW(1e-2, weight_decay=0.5), initial_phi=-30.0
        ),
        batches,
    )
    for a, b in zip(before, _weights(model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_fixed_mode_in_model_fit_and_rates_json_round_trip(tmp_path):
    batches = random_batches(6, batch_size=8)
    features = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    labels = np.concatenate([b[1] for b in batches])

    trained = MetaOptimizer(initial_phi=[-1.0, 0.5, 2.0])
    trained.build(tiny_classifier().trainable_variables)
    path = tmp_path / "rates.json"
    trained.save_rates(path)
    payload = json.loads(path.read_text())
    assert payload["mode"] == "layerwise"
    assert payload["rates"]["head"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-7)
    rates = MetaOptimizer.load_rates(path)
    assert list(rates) == ["transformer_layer_0", "transformer_layer_1", "head"]

    model = tiny_classifier()
    fixed = MetaOptimizer(
        keras.optimizers.Adam(1e-2), mode="fixed", initial_rates=rates
    )
    model.compile(optimizer=fixed, loss=LOSS)
    history = model.fit(features, labels, batch_size=8, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.05
    np.testing.assert_allclose(
        list(fixed.rates().values()), list(rates.values()), atol=1e-6
    )
    assert not hasattr(fixed, "_update_sums")
    fixed.save_rates(tmp_path / "again.json")
    assert MetaOptimizer.load_rates(tmp_path / "again.json") == pytest.approx(rates)
    with pytest.raises(ValueError, match="no meta-gradient"):
        fixed.meta_gradient([], [])


def _checkpointed_run(tmp_path, interrupt):
    batches = random_batches(8)
    model = tiny_classifier()
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=[0.2, 0.1, -0.1])
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    held_out = random_batches(4, seed=3)

    def window(k):
        _train(model, optimizer, batches[2 * k : 2 * k + 2])
        features, labels = held_out[k]
        with tf.GradientTape() as tape:
            loss = LOSS(labels, model(features))
        optimizer.apply_meta_gradient(
            tape.gradient(loss, model.trainable_variables), model.trainable_variables
        )

    window(0)
    _train(model, optimizer, batches[2:3])  # mid-window: the update sums matter
    if interrupt:
        path = checkpoint.save(tmp_path / "ckpt")
        model = tiny_classifier(seed=1)
        optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=0.0)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        optimizer.build(model.trainable_variables)
        checkpoint.restore(path).assert_consumed()
    _train(model, optimizer, batches[3:4])
    features, labels = held_out[1]
    with tf.GradientTape() as tape:
        loss = LOSS(labels, model(features))
    optimizer.apply_meta_gradient(
        tape.gradient(loss, model.trainable_variables), model.trainable_variables
    )
    window(2)
    return _weights(model), optimizer.phi.numpy()


def test_checkpoint_restore_mid_run_continues_identically(tmp_path):
    weights_a, phi_a = _checkpointed_run(tmp_path / "a", interrupt=False)
    weights_b, phi_b = _checkpointed_run(tmp_path / "b", interrupt=True)
    np.testing.assert_array_equal(phi_a, phi_b)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def test_keras_model_saving_keeps_phi_slots_and_sums(tmp_path):
    # A plain functional classifier on a keras-hub backbone. (keras-hub's own
    # Task classes override compile(), so Keras does not restore their
    # optimizer on load: use tf.train.Checkpoint for those.)
    backbone = tiny_classifier().backbone
    logits = keras.layers.Dense(3, name="logits")(backbone.output["pooled_output"])
    model = keras.Model(backbone.input, logits)
    optimizer = MetaOptimizer(keras.optimizers.Adam(1e-2), initial_phi=[0.3, 0.2, 0.1])
    model.compile(optimizer=optimizer, loss=LOSS)
    _train(model, optimizer, random_batches(2))
    features, labels = random_batches(1, seed=4)[0]
    with tf.GradientTape() as tape:
        loss = LOSS(labels, model(features))
    optimizer.apply_meta_gradient(
        tape.gradient(loss, model.trainable_variables), model.trainable_variables
    )
    _train(model, optimizer, random_batches(1, seed=2))
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras").optimizer
    assert isinstance(restored, MetaOptimizer)
    assert restored.get_config() == optimizer.get_config()
    assert (
        len(restored.variables)
        == len(optimizer.variables)
        == (2 + 1 + 36) + (2 + 2 * 36) + 4
    )
    for a, b in zip(optimizer.variables, restored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(restored.phi.numpy(), optimizer.phi.numpy())
    assert float(np.abs(restored._update_sums[0].numpy()).max()) > 0


def test_get_config_round_trip():
    optimizer = MetaOptimizer(
        keras.optimizers.AdamW(3e-5, weight_decay=0.01),
        LayerGroups(rules=[(r"^dense_(\d+)/", r"layer_\1")], frozen=()),
        mode="shared",
        initial_phi=keras.initializers.RandomNormal(seed=3),
        phi_optimizer=keras.optimizers.Adam(0.01),
    )
    clone = MetaOptimizer.from_config(optimizer.get_config())
    assert clone.get_config() == optimizer.get_config()
    assert isinstance(clone.base_optimizer, keras.optimizers.AdamW)
    assert clone.layer_groups.group_of_path("dense_4/kernel") == "layer_4"


def test_bad_use_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="not a group any rule produces"):
        LayerGroups(frozen=("embedding",))
    with pytest.raises(ValueError, match="Bad regex"):
        LayerGroups(rules=[("transformer_layer_(", "x")])
    with pytest.raises(ValueError, match=r"refers to \\2"):
        LayerGroups(rules=[(r"layer_(\d+)/", r"layer_\2")])

    variables = tiny_classifier().trainable_variables
    with pytest.raises(ValueError, match="initial φ has 2 values but this model has 3"):
        MetaOptimizer(initial_phi=[0.0, 1.0]).build(variables)
    with pytest.raises(ValueError, match=r"missing \['head'\]"):
        MetaOptimizer(
            initial_rates={"transformer_layer_0": 0.5, "transformer_layer_1": 0.5}
        ).build(variables)
    with pytest.raises(ValueError, match="'logits/kernel' is in no layer group"):
        MetaOptimizer(
            layer_groups=LayerGroups(
                rules=[(r"^transformer_layer_(\d+)/", r"transformer_layer_\1")],
                frozen=(),
            )
        ).build([v for v in variables if v.path.startswith(("transformer", "logits"))])
    with pytest.raises(ValueError, match="mode must be one of"):
        MetaOptimizer(mode="layer-wise")
    with pytest.raises(ValueError, match="does not support `use_ema`"):
        MetaOptimizer(keras.optimizers.Adam(use_ema=True))
    bad = tmp_path / "rates.json"
    bad.write_text(
        json.dumps({"format": "keras_metaopt.rates.v1", "rates": {"head": 1.5}})
    )
    with pytest.raises(
        ValueError, match=r"rates.json: rate of 'head' must be in \[0, 1\]"
    ):
        MetaOptimizer.load_rates(bad)


def test_one_rates_reader_for_the_trainers_and_serving(tmp_path):
    """serving's RunDir reads rates.json through the same checks as the
    trainers: a rate outside its parameterisation's range is refused by both."""
    from keras_metaopt.rates_file import read_rates, write_rates
    from keras_metaopt.testing import RandomRunDir
    from serving.export.run_dir import RunDir

    run = RandomRunDir(encoder="bert").write(tmp_path / "run")
    write_rates(run / "rates.json", {"head": 1.5}, mode="layerwise", rates_param="exp")
    assert RunDir(run).rates == {"head": 1.5}  # exp: λ up to 4
    assert read_rates(run / "rates.json").rates_param == "exp"
    write_rates(
        run / "rates.json", {"head": 1.5}, mode="layerwise", rates_param="sigmoid"
    )
    for read in (MetaOptimizer.load_rates, RunDir):
        with pytest.raises(ValueError, match=r"rate of 'head' must be in \[0, 1\]"):
            read(run / "rates.json" if read is MetaOptimizer.load_rates else run)
    assert not list(run.glob("*.tmp"))  # written atomically
