"""Mutation check: does the test suite catch a broken meta-optimizer?

    python -m benchmarks.mutation_check                 # every mutation, ~20 min on 2 cores
    python -m benchmarks.mutation_check --only sign --only labels

Copies the checkout (tracked and untracked, not ignored files) to a temporary
directory, checks that the relevant tests pass there unmutated, then applies
each mutation of `MUTATIONS` on its own to that copy (the real tree is never
edited), runs each of its test files and prints caught / NOT CAUGHT with the
tests that failed. `../shared` (the real XNLI data) is linked beside the copy.
Exits 1 if a mutation survives, does not apply (the code changed: update the
mutation), or the unmutated copy fails.
"""

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from keras_metaopt import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]

META_TESTS = (
    "tests/keras_metaopt/test_meta_references.py",
    "tests/keras_metaopt/test_meta_optimizer.py",
    "tests/keras_metaopt/test_meta_step.py",
)
LABEL_TESTS = (
    "tests/keras_metaopt/test_data.py",
    "tests/keras_metaopt/test_data_pipeline.py",
)


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str  # relative to the checkout
    pattern: str  # a regex that must match exactly once
    replacement: str
    tests: tuple


MUTATIONS = (
    Mutation(
        "sign",
        "the meta-gradient's sign flipped",
        "keras_metaopt/meta_optimizer.py",
        r"return -rate_param\.rate_derivative\(self\.phi, self\.rates_param\) \* contribution",
        "return rate_param.rate_derivative(self.phi, self.rates_param) * contribution",
        META_TESTS,
    ),
    Mutation(
        "sums",
        "the update sums not accumulated (assign_add -> assign in update_step)",
        "keras_metaopt/meta_optimizer.py",
        r"self\.assign_add\((\s*self\._update_sums\[)",
        r"self.assign(\1",
        META_TESTS,
    ),
    Mutation(
        "rate",
        "λ not applied (θ ← θ − Δθ_base)",
        "keras_metaopt/meta_optimizer.py",
        r"self\.assign_sub\(variable, ops\.cast\(rate, variable\.dtype\) \* update\)",
        "self.assign_sub(variable, update)",
        META_TESTS,
    ),
    Mutation(
        "phi",
        "the wrong φ for a group (group g uses φ of group g + 1)",
        "keras_metaopt/meta_optimizer.py",
        r'0 if self\.mode == "shared" else g\n',
        '0 if self.mode == "shared" else (g + 1) % len(names)\n',
        META_TESTS,
    ),
    Mutation(
        "labels",
        "the label order swapped (entailment <-> neutral)",
        "keras_metaopt/formats.py",
        r'LABEL_NAMES = \("entailment", "neutral", "contradiction"\)',
        'LABEL_NAMES = ("neutral", "entailment", "contradiction")',
        LABEL_TESTS,
    ),
)


def copy_checkout(dest):
    """Copies the files git tracks or would track (not .venv, runs, presets)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def mutate(tree, mutation):
    """Applies `mutation` to the copy; returns the original text."""
    path = tree / mutation.path
    text = path.read_text(encoding="utf-8")
    mutated, count = re.subn(mutation.pattern, mutation.replacement, text)
    if count != 1:
        raise LookupError(
            f"{mutation.path}: the pattern of '{mutation.name}' matched {count} "
            f"times, not once; update MUTATIONS in benchmarks/mutation_check.py."
        )
    path.write_text(mutated, encoding="utf-8")
    return text


def run_tests(tree, test_file):
    """(passed?, failing tests, seconds) of one test file in the copy."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rfE", "-p", "no:cacheprovider"]
        + [test_file],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    failed = re.findall(r"^(?:FAILED|ERROR) \S+::(\S+)", done.stdout, re.M)
    if done.returncode == 0:
        return True, [], seconds
    return False, failed or [f"exit status {done.returncode}"], seconds


def main(argv=None):
    parser = cli.parser(
        prog="python -m benchmarks.mutation_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[m.name for m in MUTATIONS],
        help="Run only this mutation (repeatable).",
    )
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]
    ok = True
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        tree = pathlib.Path(tmp) / "checkout"
        copy_checkout(tree)
        shared = ROOT.parent / "shared"
        if shared.is_dir():  # tests find the real data at ../shared
            (tree.parent / "shared").symlink_to(shared)
        imported = subprocess.run(
            [
                sys.executable,
                "-c",
                "import keras_metaopt; print(keras_metaopt.__file__)",
            ],
            cwd=tree,
            env=dict(os.environ, PYTHONPATH=""),
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not imported.startswith(str(tree)):
            raise SystemExit(
                f"keras_metaopt is imported from {imported!r}, not from the copy "
                f"{tree}: uninstall the installed keras_metaopt first."
            )
        for test_file in sorted({t for m in mutations for t in m.tests}):
            passed, failed, seconds = run_tests(tree, test_file)
            print(
                f"unmutated   {test_file}: {'pass' if passed else 'FAIL ' + ', '.join(failed)}"
                f" ({seconds:.0f} s)",
                flush=True,
            )
            ok &= passed
        if not ok:
            print("the unmutated copy fails: fix the tests before checking mutations")
            return 1
        for mutation in mutations:
            try:
                original = mutate(tree, mutation)
            except LookupError as e:
                print(f"{mutation.name:<11} NOT APPLICABLE: {e}", flush=True)
                ok = False
                continue
            try:
                caught = False
                print(f"{mutation.name:<11} {mutation.what}", flush=True)
                for test_file in mutation.tests:
                    passed, failed, seconds = run_tests(tree, test_file)
                    caught |= not passed
                    verdict = "passes (misses it)" if passed else "caught by"
                    print(f"{'':<11}   {test_file} ({seconds:.0f} s): {verdict}")
                    for name in failed:
                        print(f"{'':<11}     {name}")
                print(
                    f"{'':<11}   => {'caught' if caught else 'NOT CAUGHT'}", flush=True
                )
                ok &= caught
            finally:
                (tree / mutation.path).write_text(original, encoding="utf-8")
    print("every mutation was caught" if ok else "SOME MUTATIONS WERE NOT CAUGHT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
