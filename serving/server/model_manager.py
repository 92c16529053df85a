"""Find, load, hot-swap and look up model versions under their base paths."""

import logging
import threading
import time
from pathlib import Path

from serving.server.batching_config import BatchingConfig
from serving.server.request_error import RequestError
from serving.server.servable import Servable

log = logging.getLogger(__name__)

AVAILABLE, LOADING, UNLOADING, END = "AVAILABLE", "LOADING", "UNLOADING", "END"


class ModelManager:
    """Serves each model's versions the way TF Serving's file-system source does.

    Every ``poll_seconds`` the base path of each model is listed; integer-named
    directories holding a ``saved_model.pb`` are versions (anything else, such as
    the exporter's ``.tmp-export-*`` directories, is ignored). The version policy
    (default: the newest version) plus every version named by a version label
    decide which versions should be loaded. A new version is loaded and warmed
    up in the background while the old one keeps answering; only once a wanted
    version is available are unwanted ones unloaded, and requests already
    running on them finish first. A version that fails to load is retried up to
    ``max_load_retries`` times, ``retry_seconds`` apart.

    Usage (needs exported versions under ``models/nli``):

        from tensorflow_serving.config import model_server_config_pb2 as cfg
        manager = ModelManager(
            [cfg.ModelConfig(name="nli", base_path="models/nli")])
        manager.start()
        manager.resolve(request.model_spec).version  # 2, the newest
    """

    def __init__(
        self,
        model_configs,
        batching: BatchingConfig | None = None,
        poll_seconds: float = 1.0,
        max_request_batch_size: int = 256,
        max_string_bytes: int = 10_000,
        max_load_retries: int = 5,
        retry_seconds: float = 10.0,
        xla_cpu_compilation_enabled: bool = False,
    ):
        self.xla_cpu_compilation_enabled = xla_cpu_compilation_enabled
        self.batching = batching or BatchingConfig(enabled=False)
        self.poll_seconds = poll_seconds
        self.max_request_batch_size = max_request_batch_size
        self.max_string_bytes = max_string_bytes
        self.max_load_retries = max_load_retries
        self.retry_seconds = retry_seconds
        self._models = {}
        for config in model_configs:
            if config.name in self._models:
                raise ValueError(f"model {config.name!r} is configured twice")
            if not config.name or not config.base_path:
                raise ValueError("every model needs a name and a base_path")
            self._models[config.name] = {
                "config": config,
                "labels": dict(config.version_labels),
                "servables": {},
                "states": {},
                "failures": {},
                "warned_empty": False,
            }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread = None

    @classmethod
    def from_config_file(cls, path, **kwargs) -> "ModelManager":
        """Build from a ``--model_config_file`` text proto (``ModelServerConfig``)."""
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        text = Path(path).read_text(encoding="utf-8")
        try:
            config = text_format.Parse(
                text, model_server_config_pb2.ModelServerConfig()
            )
        except text_format.ParseError as err:
            raise ValueError(f"{path}: {err}") from None
        configs = list(config.model_config_list.config)
        if not configs:
            raise ValueError(f"{path}: model_config_list holds no config")
        for c in configs:
            if c.model_platform and c.model_platform != "tensorflow":
                raise ValueError(f"{path}: model_platform must be 'tensorflow'")
        return cls(configs, **kwargs)

    @classmethod
    def for_model(cls, name: str, base_path, **kwargs) -> "ModelManager":
        """One model, newest version only (TF Serving's ``--model_name/_base_path``)."""
        from tensorflow_serving.config import model_server_config_pb2

        config = model_server_config_pb2.ModelConfig(
            name=name, base_path=str(base_path), model_platform="tensorflow"
        )
        return cls([config], **kwargs)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Load what is there now, then poll for changes in a background thread.

        Raises ValueError when a model's base path is not a directory (as
        tensorflow_model_server refuses to start then).
        """
        for name, model in self._models.items():
            base = Path(model["config"].base_path)
            if not base.is_dir():
                raise ValueError(
                    f"base path {base} of model {name!r} is not a directory"
                )
        self.poll()
        self._thread = threading.Thread(
            target=self._poll_loop, name="poll", daemon=True
        )
        self._thread.start()

    def drain(self) -> None:
        """Answer every new request UNAVAILABLE from now on (shutting down).

        Requests that already hold a servable go on to finish.
        """
        self._draining.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling and unload everything; True if nothing was left undone.

        Queued batches run first, for up to ``timeout`` seconds (None: no
        limit); requests still queued after that are answered UNAVAILABLE.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._draining.set()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(0.0, timeout))
        with self._lock:
            servables = [
                s for m in self._models.values() for s in m["servables"].values()
            ]
            for m in self._models.values():
                m["servables"] = {}
        clean = True
        for servable in servables:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            clean = servable.close(timeout=left) and clean
        return clean

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # keep polling whatever happens
                log.exception("polling the model base paths failed")

    # -- polling --------------------------------------------------------------------

    @staticmethod
    def _versions_on_disk(base: Path) -> dict[int, Path]:
        found = {}
        try:
            entries = list(base.iterdir())
        except OSError:
            return found
        for entry in entries:
            if entry.name.isdigit() and entry.name.isascii() and entry.is_dir():
                if (entry / "saved_model.pb").is_file():
                    found[int(entry.name)] = entry
        return found

    @staticmethod
    def _wanted(config, on_disk: dict[int, Path], labels: dict) -> set[int]:
        policy = config.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        versions = sorted(on_disk)
        if choice == "all":
            wanted = set(versions)
        elif choice == "specific":
            wanted = set(policy.specific.versions) & set(versions)
        else:
            n = policy.latest.num_versions if choice == "latest" else 1
            wanted = set(versions[-max(n, 1) :])
        return wanted | (set(labels.values()) & set(versions))

    def poll(self) -> None:
        """One pass: load wanted versions, then unload unwanted ones."""
        for name, model in self._models.items():
            if self._stop.is_set():
                return
            base = Path(model["config"].base_path)
            on_disk = self._versions_on_disk(base)
            wanted = self._wanted(model["config"], on_disk, model["labels"])
            if not on_disk and not model["warned_empty"]:
                log.warning("no versions of model %r found under %s yet", name, base)
                model["warned_empty"] = True
            for version in sorted(wanted - set(model["servables"]), reverse=True):
                if self._stop.is_set():
                    return
                self._load(name, model, version, on_disk[version])
            loaded = set(model["servables"])
            if not wanted & loaded:
                continue
            pending = [
                v
                for v in wanted - loaded
                if model["failures"].get(v, (0, 0))[0] <= self.max_load_retries
            ]
            if pending:
                continue
            for version in sorted(loaded - wanted):
                self._unload(name, model, version)

    def _load(self, name: str, model: dict, version: int, path: Path) -> None:
        count, next_try = model["failures"].get(version, (0, 0.0))
        if count > self.max_load_retries or time.monotonic() < next_try:
            return
        with self._lock:
            model["states"][version] = (LOADING, "")
        log.info("loading %s version %d from %s", name, version, path)
        try:
            servable = Servable(
                name,
                version,
                path,
                self.batching,
                self.max_request_batch_size,
                self.max_string_bytes,
                self.xla_cpu_compilation_enabled,
            )
            servable.warmup()
        except Exception as err:
            count += 1
            message = f"{type(err).__name__}: {err}"
            log.error(
                "loading %s version %d failed (attempt %d of %d): %s",
                name,
                version,
                count,
                self.max_load_retries + 1,
                message,
            )
            with self._lock:
                model["states"][version] = (END, message)
                model["failures"][version] = (
                    count,
                    time.monotonic() + self.retry_seconds,
                )
            return
        with self._lock:
            model["servables"][version] = servable
            model["states"][version] = (AVAILABLE, "")
            model["failures"].pop(version, None)
        log.info("serving %s version %d", name, version)

    def _unload(self, name: str, model: dict, version: int) -> None:
        with self._lock:
            servable = model["servables"].pop(version)
            model["states"][version] = (UNLOADING, "")
        servable.close()
        with self._lock:
            model["states"][version] = (END, "")
        log.info("unloaded %s version %d", name, version)

    # -- lookups --------------------------------------------------------------------

    def _model(self, name: str) -> dict:
        model = self._models.get(name)
        if model is None:
            served = ", ".join(sorted(self._models))
            raise RequestError.not_found(
                f"Servable not found for request: Latest({name}); this server "
                f"serves model(s): {served}"
            )
        return model

    def _version_of(self, name: str, model: dict, spec) -> int | None:
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.version.value
        if choice == "version_label":
            label = spec.version_label
            if label not in model["labels"]:
                # TF Serving: INVALID_ARGUMENT "Unrecognized servable version
                # label: X" (ServerCore::GetModelVersionForLabel, server_core.cc).
                known = ", ".join(sorted(model["labels"])) or "none"
                raise RequestError.invalid(
                    f"Unrecognized servable version label: {label} (model "
                    f"{name!r} has labels: {known})"
                )
            return model["labels"][label]
        return None

    def resolve(self, spec) -> Servable:
        """The loaded servable for a ``ModelSpec`` (latest, version or label)."""
        if self._draining.is_set():
            raise RequestError.unavailable(
                "the server is shutting down; send the request to another replica "
                "or retry once it is back"
            )
        model = self._model(spec.name)
        version = self._version_of(spec.name, model, spec)
        with self._lock:
            servables = model["servables"]
            if version is None:
                if not servables:
                    raise RequestError.not_found(
                        f"Servable not found for request: Latest({spec.name}); no "
                        f"version is loaded yet"
                    )
                return servables[max(servables)]
            if version not in servables:
                loaded = ", ".join(str(v) for v in sorted(servables)) or "none"
                raise RequestError.not_found(
                    f"Servable not found for request: Specific({spec.name}, "
                    f"{version}); loaded versions: {loaded}"
                )
            return servables[version]

    def statuses(self, spec) -> list[tuple[int, str, str]]:
        """``(version, state, error message)`` for GetModelStatus."""
        model = self._model(spec.name)
        version = self._version_of(spec.name, model, spec)
        with self._lock:
            states = dict(model["states"])
        if version is not None:
            if version not in states:
                raise RequestError.not_found(
                    f"Could not find version {version} of model {spec.name!r}"
                )
            states = {version: states[version]}
        if not states:
            raise RequestError.not_found(
                f"Could not find any versions of model {spec.name!r}"
            )
        return [(v, *states[v]) for v in sorted(states)]
