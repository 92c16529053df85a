"""The data of every stage a trainer will run, read and checked before any
model is built: languages present for each split, every TSV parsed
(malformed rows are `file:line` errors, or counted with `--skip-bad-rows`),
split slices within the data and not empty."""

import contextlib
import logging

from keras_metaopt import data

SPLIT_FLAGS = {
    "en_split": "--en-split",
    "aux_split": "--aux-split",
    "eval_split": "--eval-split",
}


def check_data(args, aux, status, pairs):
    """Reads every split of every stage that will run; problems, one line each.

    What it read goes into `pairs` ({(split, language): NliPairs}), so that
    the trainer need not read it again; the loader's line per file is held
    back (`data_summary` makes the one line logged instead).
    """
    problems = check_data_dir(args.data_dir)
    if problems:
        return problems
    specs = {}
    for dest, flag in SPLIT_FLAGS.items():
        try:
            specs[dest] = data.SplitSpec.parse(getattr(args, dest))
        except ValueError as err:
            problems.append(f"{flag} {getattr(args, dest)}: {err}")
    needs = []  # (split dest, language)
    run = {k for k, v in status.items() if v != "complete" and "skipped" not in v}
    if "en" in run or "meta" in run:
        needs.append(("en_split", "en"))
    if "meta" in run or "aux" in run:
        needs += [("aux_split", lang) for lang in aux]
    if "eval_split" in specs and status.get("eval") != "complete":
        needs += [("eval_split", lang) for lang in _eval_languages(args, problems)]
    grouped = {}  # one line per problem, naming every language it concerns
    with _quiet(data.loaders.logger):  # one summary line instead of one per file
        for dest, lang in needs:
            split = getattr(args, dest)
            if dest not in specs or (split, lang) in pairs:
                continue
            read, problem = load_checked(
                args.data_dir, split, lang, SPLIT_FLAGS[dest], args.skip_bad_rows
            )
            if problem:
                grouped.setdefault(problem, []).append(lang)
            else:
                pairs[(split, lang)] = read
    for problem, langs in grouped.items():
        problems.append(problem.format(langs=",".join(dict.fromkeys(langs))))
    return problems


def data_summary(pairs):
    """`train_mt: 15001 pairs (en); dev[:1245]: 2490 pairs (el,ur)` from
    `{(split, language): pairs}`; more than 4 languages are counted."""
    loaded = {}
    for (split, lang), read in pairs.items():
        loaded.setdefault(split, {})[lang] = len(read)
    parts = []
    for split, sizes in loaded.items():
        langs = ",".join(sizes) if len(sizes) <= 4 else f"{len(sizes)} languages"
        parts.append(f"{split}: {sum(sizes.values())} pairs ({langs})")
    return "; ".join(parts)


@contextlib.contextmanager
def _quiet(log):
    """Only warnings and errors of `log` while the block runs."""
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _eval_languages(args, problems):
    if args.eval_languages:
        return [x for x in args.eval_languages.split(",") if x]
    try:
        languages = data.list_languages(args.data_dir, args.eval_split)
    except (OSError, ValueError) as err:
        problems.append(f"--eval-split {args.eval_split}: {_one_line(err)}")
        return []
    if not languages:
        problems.append(
            f"--eval-split {args.eval_split}: no language has this split in "
            f"{args.data_dir}"
        )
    return languages


def _one_line(err):
    return " ".join(str(err).split())


def load_checked(data_dir, split, lang, flag, skip_bad_rows=None):
    """`(pairs, None)`, or `(None, problem)` with `{langs}` for the language.

    A malformed row's problem starts with `file:line` (with a hint to use
    --skip-bad-rows when `skip_bad_rows` is False, not None: the command has
    that flag); an empty selection is a problem too.
    """
    try:
        pairs = data.load_pairs(
            data_dir, split, lang, skip_bad_rows=bool(skip_bad_rows)
        )
    except data.DataFormatError as err:
        text = _one_line(err).replace("{", "{{").replace("}", "}}")
        if skip_bad_rows is False:
            text += " (fix the file, or add --skip-bad-rows to drop such rows)"
        return None, text
    except (OSError, ValueError) as err:  # also OfflineError (a ConnectionError)
        text = _one_line(err).replace("{", "{{").replace("}", "}}")
        return None, f"{flag} {split} ({{langs}}): {text}"
    if not len(pairs):
        return None, f"{flag} {split} ({{langs}}): selects no rows"
    return pairs, None


def check_data_dir(data_dir, flag="--data-dir"):
    """A problem if `data_dir` is neither a TFDS source nor a data directory."""
    if data_dir in data.loaders.TFDS_SOURCES:
        return []
    try:
        data.detect_layout(data_dir)
    except (OSError, ValueError) as err:
        return [f"{flag} {data_dir}: {_one_line(err)}"]
    return []
