"""Algorithm 1's θ_init: "Initialize θ0 with mBERT and random values for the
classification layer" (`--meta-init pretrained`)."""

import keras
import keras_hub


def fresh_head(classifier, seed):
    """Re-initialises the classifier's own Dense layers (not the backbone's).

    Each kernel and bias is drawn anew from its layer's initializer with a
    seed derived from `seed`: Algorithm 1's "random values for the
    classification layer" at the start of a round.
    """
    dense = [
        layer
        for layer in classifier.layers
        if isinstance(layer, keras.layers.Dense) and layer.weights
    ]
    for i, layer in enumerate(dense):
        for j, (variable, init) in enumerate(
            (
                (layer.kernel, layer.kernel_initializer),
                (layer.bias, layer.bias_initializer),
            )
        ):
            if variable is None:
                continue
            config = init.get_config()
            if "seed" in config:
                config["seed"] = (int(seed) + 2 * i + j) % 2**31
            value = type(init).from_config(config)(variable.shape, variable.dtype)
            variable.assign(value)


def pretrained_weights(preset, classifier):
    """Algorithm 1's θ_init: `classifier`'s weights, its encoder's from `preset`.

    The head keeps the classifier's values here; `fresh_head` redraws it at
    the start of every round. Only the backbone is loaded: no second
    tokenizer, and no `keras.utils.set_random_seed` (that clears TF's kernel
    cache, which frees the SentencePiece resource of the classifier's own
    preprocessor: the e5 tokenizer's streams would then fail with NotFound).
    """
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    ours = classifier.backbone.weights
    if [v.path for v in backbone.weights] != [v.path for v in ours]:
        raise ValueError(
            f"--preset {preset} and the English model have different encoder "
            "weights: --meta-init pretrained needs the preset stage 1 started from."
        )
    pretrained = {id(v): w.numpy() for v, w in zip(ours, backbone.weights)}
    del backbone
    return [pretrained.get(id(v), v.numpy()) for v in classifier.weights]
