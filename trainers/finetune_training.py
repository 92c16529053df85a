"""What `python -m trainers.finetune` runs (its flags: `trainers.finetune`): the
English stage, the baseline's auxiliary stage, and the evaluation (`train`).
"""

import keras

from keras_metaopt import LayerGroups, MetaOptimizer
from keras_metaopt.formats import MODEL_DIR, RATES_JSON, holds_classifier
from keras_metaopt.group_names import layer_group, layer_index
from keras_metaopt.rates_file import rates_path, read_rates
from trainers.process import setup_process
from trainers.run import Run
from trainers.stage_loop import aux_stage


def layer_decay_rates(group_names, decay):
    """ELECTRA's rates: transformer_layer_i of n gets decay^(n + 1 - i), others 1."""
    index = {g: layer_index(g) for g in group_names}
    n = sum(i is not None for i in index.values())
    return {g: 1.0 if i is None else decay ** (n + 1 - i) for g, i in index.items()}


def train(args, method, plan=None):
    """The baseline's stages for the checked command line `args` and its
    `plan` (`trainers.flags.parse_run`); True when evaluated."""
    run = Run(args, method, setup_process(args), plan)
    stage1 = run.english_model()
    final = run.dir / MODEL_DIR
    if not run.aux:  # English only: the English model is the final one
        classifier = run.load_classifier(stage1)
        run.save_model(classifier, final)
    elif holds_classifier(final):
        classifier = run.load_classifier(final)
    else:
        frozen = run.frozen + tuple(layer_group(i) for i in range(args.freeze_bottom))

        def optimizer_of(classifier):
            optimizer = keras.optimizers.Adam(args.learning_rate)
            groups = LayerGroups(frozen=frozen)
            if args.layer_decay is not None:
                names, _, _ = groups.assign(classifier.trainable_variables)
                rates = layer_decay_rates(names, args.layer_decay), "sigmoid"
            elif args.rates_from is not None:
                read = read_rates(rates_path(args.rates_from))
                rates = read.rates, read.rates_param
            else:
                return optimizer
            optimizer = MetaOptimizer(
                optimizer,
                groups,
                mode="fixed",
                initial_rates=rates[0],
                rates_param=rates[1],
            )
            optimizer.build(classifier.trainable_variables)
            optimizer.save_rates(run.dir / RATES_JSON)
            return optimizer

        classifier = aux_stage(
            run, stage1, optimizer_of, f"stage 2: {run.method}", frozen=frozen
        )
        run.save_model(classifier, final)
    return run.evaluate(classifier)
