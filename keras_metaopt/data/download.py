"""Fetching the official XNLI-1.0 / XNLI-MT-1.0 archives with keras.utils.get_file."""

import logging
import os
import pathlib
import shutil
import urllib.parse
import zipfile

from keras_metaopt.data.loaders import (
    XNLI_DIR_NAME,
    XNLI_MT_DIR_NAME,
    find_xnli_dir,
    find_xnli_mt_train_dir,
)
from keras_metaopt.data.network import PROBE_TIMEOUT_S, require_network

logger = logging.getLogger(__name__)

XNLI_URLS = {
    XNLI_DIR_NAME: "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip",
    XNLI_MT_DIR_NAME: "https://dl.fbaipublicfiles.com/XNLI/XNLI-MT-1.0.zip",
}
# SHA-256 of the archives. XNLI-1.0.zip (17,865,352 bytes) is the value TFDS
# pins for the same archive. No hash is pinned here for XNLI-MT-1.0.zip:
# pass one in `file_hashes` to have the download verified.
XNLI_SHA256 = {
    XNLI_DIR_NAME: "4ba1d5e1afdb7161f0f23c66dc787802ccfa8a25a3ddd3b165a35e50df346ab1",
    XNLI_MT_DIR_NAME: None,
}
CACHE_SUBDIR = os.path.join("datasets", "xnli")


def _extracted(root, name):
    return (
        find_xnli_dir(root) if name == XNLI_DIR_NAME else find_xnli_mt_train_dir(root)
    )


def _extract(archive, root):
    """Extracts a zip into `root` via a scratch folder, so that an interrupted
    extraction never leaves a half-filled directory that looks complete."""
    scratch = root / f".extracting-{pathlib.Path(archive).name}"
    shutil.rmtree(scratch, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(scratch)  # Drops absolute and '..' member paths.
    for child in sorted(scratch.iterdir()):
        if child.name != "__MACOSX":
            target = root / child.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            child.rename(target)
    shutil.rmtree(scratch)


def download_xnli(
    cache_dir=None,
    *,
    include_mt=True,
    origins=None,
    file_hashes=None,
    timeout=PROBE_TIMEOUT_S,
):
    """Downloads (once) and extracts XNLI-1.0 and XNLI-MT-1.0; returns their root.

    Uses `keras.utils.get_file` (cache + SHA-256 check) to fetch the zips
    into `{cache_dir or $KERAS_HOME or ~/.keras}/datasets/xnli/` and extracts
    them there (XNLI-1.0/, XNLI-MT-1.0/). An archive whose extracted
    directory is already there is not fetched again, so this works offline
    after the first run. Before a download over http(s) the server is probed
    and `OfflineError` (naming the offline alternatives) is raised within
    `timeout` seconds if it is unreachable. `origins` / `file_hashes` map
    'XNLI-1.0' / 'XNLI-MT-1.0' to a mirror URL (file:// works) / expected
    hash. The returned directory is an 'official' layout for `load_pairs`.

    Usage (needs the network on the first call):

        root = download_xnli()  # Some 500 MB on the first call.
        load_pairs(root, "train", "de")  # XNLI-MT-1.0 German training data.
    """
    import keras

    names = [XNLI_DIR_NAME, XNLI_MT_DIR_NAME] if include_mt else [XNLI_DIR_NAME]
    origins = {**XNLI_URLS, **(origins or {})}
    file_hashes = {**XNLI_SHA256, **(file_hashes or {})}
    base = os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME", "~/.keras"))
    root = pathlib.Path(base) / CACHE_SUBDIR
    os.makedirs(base, exist_ok=True)  # Else get_file falls back to /tmp/.keras.
    for name in names:
        if _extracted(root, name):
            logger.info("Using cached %s under %s", name, root)
            continue
        origin = origins[name]
        if urllib.parse.urlsplit(origin).scheme in ("http", "https"):
            require_network(origin, f"Downloading {name}", timeout=timeout)
        if file_hashes[name] is None:
            logger.warning(
                "No SHA-256 known for %s; its download is not verified", name
            )
        archive = keras.utils.get_file(
            fname=f"{name}.zip",
            origin=origin,
            file_hash=file_hashes[name],
            cache_dir=base,
            cache_subdir=CACHE_SUBDIR,
        )
        root = pathlib.Path(archive).parent  # get_file may fall back to /tmp.
        _extract(archive, root)
        if not _extracted(root, name):
            raise FileNotFoundError(
                f"the archive from {origin} did not contain a {name}/ directory "
                f"with the expected files (looked under {root})"
            )
    return str(root)
