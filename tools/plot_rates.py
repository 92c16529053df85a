"""Heat map of the learned rates λ (layer group × meta step) of a meta run.

    python -m tools.plot_rates runs/meta            # writes runs/meta/rates.png
    python -m tools.plot_rates runs/meta --out rates.png

Reads the `rates/<group>` scalars that `trainers.meta` writes to TensorBoard.
"""

import pathlib
import sys

from keras_metaopt import cli
from keras_metaopt.formats import RATES_PNG, TB_DIR
from keras_metaopt.group_names import EMBEDDINGS, LAYER_PREFIX, layer_index
from keras_metaopt.rate_param import FORMULA, MAX_RATE
from keras_metaopt.run_record import recorded_args

# matplotlib, TensorFlow and TensorBoard load on use: `--help` answers without.


def read_rates(run_dir):
    """`(groups, steps, rates[group, step])` from the run's TensorBoard events."""
    import numpy as np
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    tb = pathlib.Path(run_dir) / TB_DIR
    if not tb.is_dir():
        raise FileNotFoundError(f"{tb}: no TensorBoard directory (is {run_dir} a run?)")
    events = EventAccumulator(str(tb), size_guidance={"tensors": 0})
    events.Reload()
    tags = [t for t in events.Tags()["tensors"] if t.startswith("rates/")]
    if not tags:
        raise ValueError(
            f"{tb}: no rates/* scalars: not a trainers.meta run, or not started."
        )
    series = {t[len("rates/") :]: events.Tensors(t) for t in tags}
    groups = sorted(series, key=_group_order)
    steps = sorted({e.step for s in series.values() for e in s})
    rates = np.full((len(groups), len(steps)), np.nan)
    column = {s: i for i, s in enumerate(steps)}
    for row, group in enumerate(groups):
        for event in series[group]:
            rates[row, column[event.step]] = float(tf.make_ndarray(event.tensor_proto))
    return groups, steps, rates


def _group_order(name):
    index = layer_index(name)
    if index is not None:
        return (1, index)
    return (0, 0) if name == EMBEDDINGS else (2, 0)


def rates_param(run_dir):
    """How the run's λ depends on φ (run.json's --rates-param; runs that
    predate the flag, or have no run.json, used the paper's sigmoid)."""
    return (recorded_args(run_dir) or {}).get("rates_param", "sigmoid")


def plot_rates(run_dir, out=None):
    """Writes the heat map (default RUN_DIR/rates.png), its colour scale over λ's
    whole range under the run's parametrisation; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, steps, rates = read_rates(run_dir)
    param = rates_param(run_dir)
    out = pathlib.Path(out or pathlib.Path(run_dir) / RATES_PNG)
    fig, ax = plt.subplots(
        figsize=(max(6, len(steps) * 0.08 + 3), 0.35 * len(groups) + 2)
    )
    image = ax.imshow(
        rates,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=0,
        vmax=MAX_RATE[param],
        extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(groups) - 0.5),
    )
    ax.set_yticks(
        range(len(groups)), [g.replace(LAYER_PREFIX, "layer ") for g in groups]
    )
    ax.set_xlabel("meta step")
    ax.set_title(f"learned rates λ = {FORMULA[param]}: {pathlib.Path(run_dir).name}")
    fig.colorbar(image, ax=ax, label="λ")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None):
    parser = cli.parser("python -m tools.plot_rates", __doc__)
    parser.add_argument("run_dir", help="A trainers.meta output directory.")
    parser.add_argument("--out", help="PNG path (default RUN_DIR/rates.png).")
    cli.add_log_level_flag(parser)
    args = parser.parse_args(argv)
    cli.configure_logging(args.log_level)
    if argv is None:
        cli.install_excepthook(parser.prog, debug=args.log_level == "DEBUG")
    cli.import_tensorflow()
    from trainers.output_checks import check_output_file

    problems = []
    if not pathlib.Path(args.run_dir).is_dir():
        problems.append(f"{args.run_dir}: no such run directory")
    if args.out:
        problems += check_output_file(args.out, "--out")
    if not problems:
        try:
            read_rates(args.run_dir)
        except (OSError, ValueError) as err:
            problems.append(" ".join(str(err).split()))
    if problems:
        cli.fail(parser.prog, problems)
    print(plot_rates(args.run_dir, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
