"""Tests of the data loaders: file formats, slicing, bad rows, offline sources."""

import hashlib
import logging
import os
import pathlib
import pickle
import time
import zipfile

import pytest

from keras_metaopt import data
from keras_metaopt.data import network, tfds_source
from tests.required import missing

# The shared data folder beside the checkout.
XNLI_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "xnli"
HEADER = "premise\thypothesis\tlabel\n"


def write(path, text):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def tsv_rows(*rows):
    return HEADER + "".join("\t".join(row) + "\n" for row in rows)


def numbered_dev(tmp_path, n, lang="en"):
    """dev.{lang}.tsv with premises 'p0'..'p{n-1}', labels cycling e/n/c."""
    names = data.LABEL_NAMES
    rows = [(f"p{i}", f"h{i}", names[i % 3]) for i in range(n)]
    write(tmp_path / f"dev.{lang}.tsv", tsv_rows(*rows))
    return tmp_path


# --- per-language TSV directory -------------------------------------------------


def test_quotes_are_plain_text_and_rows_never_merge(tmp_path):
    rows = [
        ('"Stop," he said.', 'He said "stop"', "entailment"),
        ('"Unbalanced quote starts here', "and the row still ends here", "neutral"),
        ('""', '"""', "contradiction"),
        ("Trailing spaces stay   ", "  leading too ", "neutral"),
        ('"tab-free "quoted" middle"', "x", "entailment"),
    ]
    write(tmp_path / "train.en.tsv", tsv_rows(*rows))
    pairs = data.load_pairs(tmp_path, "train", "en")
    assert len(pairs) == 5
    assert pairs.premises == [r[0] for r in rows]
    assert pairs.hypotheses == [r[1] for r in rows]
    assert pairs.labels == [0, 1, 2, 1, 0]
    assert pairs.language == "en"
    assert pairs.num_skipped == 0
    assert pairs.source == f"{tmp_path / 'train.en.tsv'} train"


def test_label_name_variants_map_to_one_canonical_order(tmp_path):
    labels = ["entailment", "neutral", "contradiction", "contradictory"]
    labels += ["Entailment", "NEUTRAL", " contradiction "]
    write(tmp_path / "dev.de.tsv", tsv_rows(*[("p", "h", x) for x in labels]))
    assert data.load_pairs(tmp_path, "dev", "de").labels == [0, 1, 2, 2, 0, 1, 2]
    assert data.LABEL_NAMES == ("entailment", "neutral", "contradiction")
    assert data.label_id("contradictory") == 2
    assert data.label_id("1") is None  # Integers are ambiguous across sources.


def test_crlf_bom_and_trailing_blank_lines(tmp_path):
    text = "\ufeffpremise\thypothesis\tlabel\r\np \t h\tneutral\r\n\r\n\n"
    write(tmp_path / "dev.en.tsv", text)
    pairs = data.load_pairs(tmp_path, "dev", "en")
    assert (pairs.premises, pairs.hypotheses, pairs.labels) == (["p "], [" h"], [1])


def test_header_columns_are_found_by_name(tmp_path):
    write(
        tmp_path / "dev.fr.tsv",
        "label\tid\thypo\tpremise\ncontradictory\t7\tH\tP\n",
    )
    pairs = data.load_pairs(tmp_path, "dev", "fr")
    assert (pairs.premises, pairs.hypotheses, pairs.labels) == (["P"], ["H"], [2])


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("only\ttwo", "got 2 columns, expected 3"),
        ("a\tb\tneutral\textra", "got 4 columns, expected 3"),
        ("p\th\tmaybe", "unknown label 'maybe'"),
        ("p\th\t-", "unknown label '-'"),
        ("p\th\t0", "unknown label '0'"),
        ("\th\tneutral", "empty premise"),
        ("   \th\tneutral", "empty premise"),
        ("p\t\tentailment", "empty hypothesis"),
        ("", "got 0 columns, expected 3"),
    ],
)
def test_each_bad_row_kind_names_file_and_line(tmp_path, bad_line, reason):
    good = "p\th\tneutral\n"
    path = write(tmp_path / "dev.en.tsv", HEADER + good * 3 + bad_line + "\n" + good)
    with pytest.raises(data.DataFormatError) as info:
        data.load_pairs(tmp_path, "dev", "en")
    err = info.value
    assert str(err).startswith(f"{path}:5: ")  # Header = line 1, bad row = line 5.
    assert reason in str(err)
    assert (err.path, err.line) == (str(path), 5)
    assert isinstance(err, ValueError)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_bad_header_and_empty_file(tmp_path):
    path = write(tmp_path / "dev.en.tsv", "premise\tlabel\np\tneutral\n")
    with pytest.raises(data.DataFormatError, match=rf"^{path}:1: header has no hyp"):
        data.load_pairs(tmp_path, "dev", "en")
    path = write(tmp_path / "dev.en.tsv", "")
    with pytest.raises(data.DataFormatError, match=rf"^{path}:1: empty file"):
        data.load_pairs(tmp_path, "dev", "en")
    path.write_bytes(HEADER.encode() + b"p\th\xff\tneutral\n")
    with pytest.raises(data.DataFormatError, match=rf"^{path}:2: not valid UTF-8"):
        data.load_pairs(tmp_path, "dev", "en")


def test_skip_bad_rows_counts_and_reports(tmp_path, caplog):
    lines = [
        "p1\th1\tentailment",  # line 2
        "only\ttwo",  # 3: bad
        "p2\th2\tneutral",  # 4
        "p\th\tmaybe",  # 5: bad
        "\th\tneutral",  # 6: bad
        "p3\th3\tcontradictory",  # 7
        "p\t\tneutral",  # 8: bad
        "",  # 9: bad (blank line inside the file)
        "a\tb\tc\td",  # 10: bad
        "p4\th4\tneutral",  # 11
    ]
    path = write(tmp_path / "dev.en.tsv", HEADER + "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="keras_metaopt.data"):
        pairs = data.load_pairs(tmp_path, "dev", "en", skip_bad_rows=True)
    assert pairs.premises == ["p1", "p2", "p3", "p4"]
    assert pairs.labels == [0, 1, 2, 1]
    assert pairs.num_skipped == 6
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert f"Skipped 6 malformed row(s) of 10 in {path}" in message
    assert "empty hypothesis: 1, empty premise: 1, unknown label: 1" in message
    assert "wrong column count: 3" in message
    for line in (3, 5, 6, 8, 9):  # The first five are listed ...
        assert f"{path}:{line}: " in message
    assert f"{path}:10:" not in message  # ... and the rest counted.
    assert message.endswith("; and 1 more")


def test_missing_split_or_language_lists_what_exists(tmp_path):
    numbered_dev(tmp_path, 3, "en")
    numbered_dev(tmp_path, 3, "de")
    write(tmp_path / "train_mt.en.tsv", tsv_rows(("p", "h", "neutral")))
    with pytest.raises(FileNotFoundError) as info:
        data.load_pairs(tmp_path, "dev", "sw")
    assert "no file dev.sw.tsv" in str(info.value)
    assert "dev: de en; train_mt: en" in str(info.value)
    assert data.list_languages(tmp_path, "dev[:10%]") == ["de", "en"]
    assert len(data.load_pairs(tmp_path, "validation", "de")) == 3  # Alias of dev.
    with pytest.raises(ValueError, match="language must be a code"):
        data.load_pairs(tmp_path, "dev", "../en")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_pairs(tmp_path / "nope", "dev", "en")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="unrecognised data directory"):
        data.load_pairs(tmp_path / "empty", "dev", "en")


# --- split specs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, n, bounds",
    [
        ("dev", 2490, (0, 2490)),
        ("dev[:1245]", 2490, (0, 1245)),
        ("dev[1245:]", 2490, (1245, 2490)),
        ("dev[10:20]", 2490, (10, 20)),
        ("dev[-10:]", 2490, (2480, 2490)),
        ("dev[:-10]", 2490, (0, 2480)),
        ("dev[:]", 2490, (0, 2490)),
        ("train[:10%]", 15001, (0, 1500)),
        ("train[10%:20%]", 15001, (1500, 3000)),
        ("train[-5%:]", 15001, (14251, 15001)),
        ("train[:33.3%]", 1000, (0, 333)),
        ("train[:50%]", 5, (0, 2)),  # Python/TFDS rounding: round(2.5) == 2.
        ("test", 0, (0, 0)),
        (" dev[ 1 : 3 ] ", 5, (1, 3)),
    ],
)
def test_split_spec_bounds(spec, n, bounds):
    assert data.parse_split(spec).bounds(n) == bounds


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "malformed split spec"),
        ("dev[", "malformed split spec"),
        ("dev]", "malformed split spec"),
        ("dev[5]", "a single index is not supported"),
        ("dev[1:2:3]", "a step is not supported"),
        ("dev[a:b]", "bad bound 'a'"),
        ("dev[1.5:]", "must be an integer"),
        ("dev[10:20%]", "mixes a row index and a percentage"),
        ("dev[:150%]", r"outside \[-100%, 100%\]"),
        ("dev[:5%%]", "bad bound"),
        ("dev[:1245]+test", "malformed split spec"),
        ("de v", "malformed split spec"),
    ],
)
def test_malformed_split_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        data.parse_split(spec)


def test_split_spec_range_errors_and_str():
    with pytest.raises(ValueError, match="out of range for split 'dev' with 100 rows"):
        data.parse_split("dev[:101]").bounds(100)
    with pytest.raises(ValueError, match="start is after stop"):
        data.parse_split("dev[20:10]").bounds(100)
    assert str(data.parse_split("train[:10%]")) == "train[:10%]"
    assert str(data.parse_split("dev[1245:]")) == "dev[1245:]"
    assert str(data.parse_split("dev")) == "dev"
    with pytest.raises(ValueError, match="must be a string"):
        data.parse_split(5)


def test_slices_partition_the_file(tmp_path):
    numbered_dev(tmp_path, 2490)
    first = data.load_pairs(tmp_path, "dev[:1245]", "en")
    second = data.load_pairs(tmp_path, "dev[1245:]", "en")
    everything = data.load_pairs(tmp_path, "dev", "en")
    assert (len(first), len(second)) == (1245, 1245)
    assert first.premises + second.premises == everything.premises
    assert first.labels + second.labels == everything.labels
    assert second.premises[0] == "p1245"
    assert data.load_pairs(tmp_path, "dev[10:20]", "en").premises == [
        f"p{i}" for i in range(10, 20)
    ]
    tenth = data.load_pairs(tmp_path, "dev[:10%]", "en")
    rest = data.load_pairs(tmp_path, "dev[10%:]", "en")
    assert (len(tenth), len(rest)) == (249, 2241)
    assert tenth.premises + rest.premises == everything.premises
    with pytest.raises(ValueError, match="out of range"):
        data.load_pairs(tmp_path, "dev[:3000]", "en")


def test_slices_apply_after_skipped_rows(tmp_path):
    write(
        tmp_path / "dev.en.tsv",
        tsv_rows(("a", "h", "neutral"), ("bad", "h", "?"), ("b", "h", "neutral"))
        + "c\th\tneutral\n",
    )
    pairs = data.load_pairs(tmp_path, "dev[1:]", "en", skip_bad_rows=True)
    assert (pairs.premises, pairs.num_skipped) == (["b", "c"], 1)


def test_nli_pairs_container():
    pairs = data.NliPairs(["a", "b", "c"], ["x", "y", "z"], [2, 0, 2], "en", "t")
    assert len(pairs) == 3
    assert pairs[1:].premises == ["b", "c"]
    assert pairs[1:].labels == [0, 2]
    assert pairs.label_counts() == [1, 0, 2]
    with pytest.raises(ValueError, match="differ in length"):
        data.NliPairs(["a"], [], [0], "en", "t")
    with pytest.raises(ValueError, match="labels must be ints"):
        data.NliPairs(["a"], ["b"], [3], "en", "t")
    with pytest.raises(TypeError, match="slicing only"):
        pairs[0]


# --- official XNLI-1.0 / XNLI-MT-1.0 layout --------------------------------------

OFFICIAL_HEADER = [
    "language",
    "gold_label",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1",
    "sentence2",
    "promptID",
    "pairID",
    "sentence1_tokenized",
]


def official_row(lang, label, premise, hypothesis, i):
    return [lang, label, "", "( x )", premise, hypothesis, str(i), str(i), "t o k"]


def make_official(root, nested=False):
    """A small XNLI-1.0 + XNLI-MT-1.0 tree (nested = as get_file extracts it)."""
    xnli = root / "XNLI-1.0" / ("XNLI-1.0" if nested else "")
    mt = root / "XNLI-MT-1.0" / ("XNLI-MT-1.0" if nested else "") / "multinli"
    dev_rows = []
    for i, label in enumerate(["entailment", "neutral", "contradiction", "neutral"]):
        for lang in ("en", "de", "zh"):
            dev_rows.append(
                official_row(lang, label, f'"{lang} p{i} ', f"{lang} h{i}", i)
            )
    test_rows = [official_row("de", "neutral", "tp", "th", 0)]
    for name, rows in (("xnli.dev.tsv", dev_rows), ("xnli.test.tsv", test_rows)):
        write(
            xnli / name,
            "\n".join("\t".join(r) for r in [OFFICIAL_HEADER, *rows]) + "\n",
        )
    write(
        mt / "multinli.train.de.tsv",
        "premise\thypo\tlabel\n"
        '"Wir" gehen .\tSie gehen .\tcontradictory\n'
        "Ein Hund \tEin Tier\tentailment\n",
    )
    write(mt / "multinli.train.en.tsv", "premise\thypo\tlabel\nA\tB\tneutral\n")
    return root


@pytest.mark.parametrize("nested", [False, True])
def test_official_layout(tmp_path, nested):
    root = make_official(tmp_path, nested)
    assert data.detect_layout(root) == "official"
    dev = data.load_pairs(root, "dev", "de")
    assert dev.premises == ['"de p0 ', '"de p1 ', '"de p2 ', '"de p3 ']
    assert dev.hypotheses == ["de h0", "de h1", "de h2", "de h3"]
    assert dev.labels == [0, 1, 2, 1]
    assert data.load_pairs(root, "dev[2:]", "zh").premises == ['"zh p2 ', '"zh p3 ']
    assert data.load_pairs(root, "test", "de").premises == ["tp"]
    train = data.load_pairs(root, "train", "de")
    assert train.premises == ['"Wir" gehen .', "Ein Hund "]
    assert train.hypotheses == ["Sie gehen .", "Ein Tier"]
    assert train.labels == [2, 0]
    assert data.list_languages(root, "dev") == ["de", "en", "zh"]
    assert data.list_languages(root, "train") == ["de", "en"]
    with pytest.raises(
        ValueError, match=r"no rows for language 'fr'; languages: de en zh"
    ):
        data.load_pairs(root, "dev", "fr")
    with pytest.raises(FileNotFoundError, match="training languages found: de en"):
        data.load_pairs(root, "train", "fr")
    with pytest.raises(ValueError, match="unknown split 'train_mt'"):
        data.load_pairs(root, "train_mt", "de")
    # Each official directory is also accepted on its own.
    assert data.load_pairs(dev_dir(root, nested), "dev", "en").labels == [0, 1, 2, 1]


def dev_dir(root, nested):
    return root / "XNLI-1.0" / ("XNLI-1.0" if nested else "")


def test_official_bad_rows_name_file_and_line(tmp_path):
    root = make_official(tmp_path)
    path = root / "XNLI-1.0" / "xnli.dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[9] = lines[9].replace("\tcontradiction\t", "\tcontradictions\t")  # zh
    lines[10] = "en\tneutral\ttoo few"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # A wrong column count is an error for every language (the row can't be
    # attributed); a bad label only for the language of its row.
    with pytest.raises(data.DataFormatError, match=rf"^{path}:11: got 3 columns"):
        data.load_pairs(root, "dev", "en")
    with pytest.raises(data.DataFormatError, match=rf"^{path}:10: unknown label"):
        data.load_pairs(root, "dev", "zh")
    zh = data.load_pairs(root, "dev", "zh", skip_bad_rows=True)
    assert (zh.premises, zh.num_skipped) == (['"zh p0 ', '"zh p1 ', '"zh p3 '], 2)
    de = data.load_pairs(root, "dev", "de", skip_bad_rows=True)
    assert (len(de), de.num_skipped) == (4, 1)


# --- TFDS and downloads: fast, clear failures offline ------------------------------


@pytest.fixture
def unreachable(monkeypatch):
    """Points every probe at an unroutable address with a 2 s budget."""
    real = network.network_error
    monkeypatch.setattr(
        network,
        "network_error",
        lambda url, timeout=2.0: real("http://192.0.2.1:81/", min(timeout, 2.0)),
    )


@pytest.mark.parametrize(
    "source, split", [("tfds", "dev[:10]"), ("tfds:multi_nli", "train")]
)
def test_tfds_offline_fails_fast_with_alternatives(
    tmp_path, unreachable, source, split
):
    start = time.monotonic()
    with pytest.raises(data.OfflineError) as info:
        data.load_pairs(source, split, "en", tfds_data_dir=tmp_path / "tfds")
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "needs the network" in message
    assert "'{split}.{lang}.tsv'" in message
    assert "'XNLI-1.0/'" in message and "'XNLI-MT-1.0/'" in message
    assert "download_xnli()" in message
    assert isinstance(info.value, ConnectionError)


def test_tfds_offline_fails_fast_with_the_real_probe(tmp_path):
    if data.network_error("https://cims.nyu.edu/", timeout=3) is None:
        pytest.skip("the network is reachable here")
    start = time.monotonic()
    with pytest.raises(data.OfflineError, match="Offline alternatives"):
        data.load_pairs("tfds", "dev", "de", tfds_data_dir=tmp_path / "tfds")
    assert time.monotonic() - start < 15


def test_tfds_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="English only"):
        data.load_pairs("tfds", "train", "de", tfds_data_dir=tmp_path)
    with pytest.raises(ValueError, match="no language 'xx'"):
        data.load_pairs("tfds:xnli", "dev", "xx", tfds_data_dir=tmp_path)
    with pytest.raises(ValueError, match="has no split 'train'"):
        data.load_pairs("tfds:xnli", "train", "en", tfds_data_dir=tmp_path)
    assert data.list_languages("tfds", "test")[:3] == ["ar", "bg", "de"]
    assert data.list_languages("tfds:multi_nli", "train") == ["en"]


def test_tfds_labels_are_mapped_by_name():
    import tensorflow_datasets as tfds

    for name in tfds_source.TFDS_DATASETS:
        builder = tfds.builder(name, data_dir="/nonexistent-tfds-dir")
        names = builder.info.features["label"].names
        assert [data.label_id(x) for x in names] == [0, 1, 2], name


def zip_tree(root, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root.parent))
    return zip_path


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_download_xnli_from_local_urls_then_uses_cache(tmp_path, unreachable):
    src = make_official(tmp_path / "src")
    xnli_zip = zip_tree(src / "XNLI-1.0", tmp_path / "XNLI-1.0.zip")
    mt_zip = zip_tree(src / "XNLI-MT-1.0", tmp_path / "XNLI-MT-1.0.zip")
    origins = {"XNLI-1.0": xnli_zip.as_uri(), "XNLI-MT-1.0": mt_zip.as_uri()}
    hashes = {"XNLI-1.0": sha256(xnli_zip), "XNLI-MT-1.0": sha256(mt_zip)}
    cache = tmp_path / "cache"
    root = data.download_xnli(cache, origins=origins, file_hashes=hashes)
    assert root == str(cache / "datasets" / "xnli")
    assert (cache / "datasets/xnli/XNLI-1.0/xnli.dev.tsv").is_file()
    assert (cache / "datasets/xnli/XNLI-MT-1.0/multinli").is_dir()
    assert data.detect_layout(root) == "official"
    assert data.load_pairs(root, "dev", "de").labels == [0, 1, 2, 1]
    assert data.load_pairs(root, "train", "de").labels == [2, 0]
    # Second call: archives are gone and the network is down, the cache serves.
    os.remove(xnli_zip)
    os.remove(mt_zip)
    start = time.monotonic()
    assert data.download_xnli(cache) == root
    assert time.monotonic() - start < 1


def test_download_xnli_verifies_hash_and_fails_fast_offline(tmp_path, unreachable):
    src = make_official(tmp_path / "src")
    xnli_zip = zip_tree(src / "XNLI-1.0", tmp_path / "XNLI-1.0.zip")
    with pytest.raises(ValueError, match="hash does not match"):
        data.download_xnli(
            tmp_path / "cache",
            include_mt=False,
            origins={"XNLI-1.0": xnli_zip.as_uri()},
            file_hashes={"XNLI-1.0": "0" * 64},
        )
    start = time.monotonic()
    with pytest.raises(
        data.OfflineError, match="Downloading XNLI-1.0 needs the network"
    ):
        data.download_xnli(tmp_path / "cache2")
    assert time.monotonic() - start < 15
    assert data.XNLI_URLS == {
        "XNLI-1.0": "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip",
        "XNLI-MT-1.0": "https://dl.fbaipublicfiles.com/XNLI/XNLI-MT-1.0.zip",
    }


# --- the real data ---------------------------------------------------------------


def test_real_xnli_files():
    if not XNLI_DIR.is_dir():
        missing(f"no XNLI data at {XNLI_DIR} (../shared/data/xnli beside the checkout)")
    assert data.detect_layout(XNLI_DIR) == "tsv"
    dev = data.load_pairs(XNLI_DIR, "dev", "en")
    assert len(dev) == 2490
    assert dev.label_counts() == [830, 830, 830]
    assert dev.premises[0] == "And he said, Mama, I'm home."
    assert dev.labels[:3] == [1, 2, 0]
    train = data.load_pairs(XNLI_DIR, "train_mt", "en")
    assert len(train) == 15001
    assert train.label_counts() == [5100, 4397, 5504]
    assert train.num_skipped == 0
    assert sum(p.startswith('"') for p in train.premises + train.hypotheses) == 81
    assert sum(p.endswith(" ") for p in train.premises + train.hypotheses) == 77
    halves = [data.load_pairs(XNLI_DIR, s, "de") for s in ("dev[:1245]", "dev[1245:]")]
    assert [len(h) for h in halves] == [1245, 1245]
    assert len(data.list_languages(XNLI_DIR, "dev")) == 15


class FakeBuilder:
    """Stands in for a prepared TFDS builder (no network, no files)."""

    def __init__(self, name, examples, label_names):
        self.name, self.examples = name, examples
        self.data_dir = "/fake"
        label = type("Label", (), {"names": label_names})()
        self.info = type("Info", (), {"features": {"label": label}})()

    def is_prepared(self):
        return True

    def as_dataset(self, split):
        import tensorflow as tf

        assert split == {"xnli": "validation", "multi_nli": "train"}[self.name]
        return tf.data.Dataset.from_tensor_slices(self.examples)


def test_prepared_tfds_data_is_read_without_network(monkeypatch, unreachable):
    import tensorflow_datasets as tfds

    # Label names in a shuffled order: ints must be mapped by name.
    names = ["contradiction", "entailment", "neutral"]
    xnli = {
        "premise": {"de": ["P0", "P1 ", "P2"], "en": ["p0", "p1", "p2"]},
        "hypothesis": {
            "language": [["en", "de"], ["de", "en"], ["de", "en"]],
            "translation": [["h0", "H0"], ["H1", "h1"], ["", "h2"]],
        },
        "label": [0, 1, 2],
    }
    multi_nli = {"premise": ["a", "b"], "hypothesis": ["x", "y"], "label": [2, 0]}
    fakes = {"xnli": (xnli, names), "multi_nli": (multi_nli, names)}
    monkeypatch.setattr(
        tfds, "builder", lambda name, data_dir=None: FakeBuilder(name, *fakes[name])
    )
    en = data.load_pairs("tfds", "dev", "en")
    assert (en.premises, en.hypotheses, en.labels) == (
        ["p0", "p1", "p2"],
        ["h0", "h1", "h2"],
        [2, 0, 1],
    )
    assert en.source == "tfds:xnli/validation dev"
    with pytest.raises(data.DataFormatError, match="example 2: empty premise or hyp"):
        data.load_pairs("tfds", "dev", "de")
    de = data.load_pairs("tfds:xnli", "validation[:1]", "de", skip_bad_rows=True)
    assert (de.premises, de.hypotheses, de.labels, de.num_skipped) == (
        ["P0"],
        ["H0"],
        [2],
        1,
    )
    train = data.load_pairs("tfds", "train", "en")
    assert (train.premises, train.hypotheses, train.labels) == (
        ["a", "b"],
        ["x", "y"],
        [1, 2],
    )


# --- pairs to predict (the serving client's and export check's reader) ---------


def test_pair_tsv_is_the_training_format_with_an_optional_label(tmp_path):
    from keras_metaopt.data.tsv import read_pair_tsv

    plain = write(tmp_path / "plain.tsv", 'premise\thypothesis\n"a\tb\n\nc\td\n')
    with pytest.raises(
        data.DataFormatError, match=r"plain\.tsv:3: got 0 columns, expected 2"
    ):
        read_pair_tsv(plain)  # a blank line in the middle, as in training
    plain.write_text('premise\thypothesis\n"a\tb\n\td\n', encoding="utf-8")
    rows = read_pair_tsv(plain)  # an empty premise is a pair to predict
    assert (rows.premises, rows.hypotheses) == (['"a', ""], ["b", "d"])
    assert rows.labels is None and rows.line_numbers == [2, 3] and len(rows) == 2
    with pytest.raises(data.DataFormatError, match=r"plain\.tsv:3: empty premise"):
        data.read_nli_tsv(
            write(
                tmp_path / "plain.tsv",
                tsv_rows(("a", "b", "neutral"), ("", "d", "neutral")),
            )
        )
    # XNLI-1.0's header names and XNLI-MT's "contradictory" read as in training.
    xnli = write(
        tmp_path / "xnli.tsv",
        "language\tgold_label\tsentence1\tsentence2\n"
        "de\tcontradictory\tp\th\nde\tneutral\tq\ti\n",
    )
    rows = read_pair_tsv(xnli)
    assert rows.labels == [2, 1] and rows.premises == ["p", "q"]
    assert rows.labels == data.read_nli_tsv(xnli, "de").labels
    numbered = write(tmp_path / "numbered.tsv", tsv_rows(("p", "h", "1")))
    for read in (read_pair_tsv, data.read_nli_tsv):
        with pytest.raises(
            data.DataFormatError, match=r"numbered\.tsv:2: unknown label '1'"
        ):
            read(numbered)
    with pytest.raises(ValueError, match=r"^cannot read .*missing\.tsv: No such file"):
        read_pair_tsv(tmp_path / "missing.tsv")


def test_pair_tsv_reader_imports_without_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; from keras_metaopt.data.tsv import read_pair_tsv; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).resolve().parents[2],
        check=True,
    )
    assert done.stdout.split() == ["False", "False"]
