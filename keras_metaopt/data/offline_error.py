"""The error raised when a source needs the network and it is unreachable."""

OFFLINE_ALTERNATIVES = (
    "Offline alternatives: (1) a directory of per-language TSV files "
    "'{split}.{lang}.tsv' with header premise<TAB>hypothesis<TAB>label, or "
    "(2) the official XNLI data directories 'XNLI-1.0/' (xnli.dev.tsv, "
    "xnli.test.tsv) and 'XNLI-MT-1.0/' (multinli/multinli.train.{lang}.tsv), "
    "fetched once on a machine with internet, e.g. with "
    "keras_metaopt.data.download_xnli(). Pass either directory to load_pairs()."
)


class OfflineError(ConnectionError):
    """A data source needs the network, and the network is unreachable.

    The message says what was tried and names the offline alternatives.

    Usage (on a machine without the network, TFDS data not yet prepared):

        try:
            load_pairs("tfds", "dev", "de")
        except OfflineError as err:
            print(err)  # ... Offline alternatives: ...
    """
