"""fldata.cli: the exit-code mapping, one-line messages and the writability checks every CLI
shares.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fldata.cli import (
    EXIT_CHECK_FAILED,
    EXIT_IO,
    EXIT_USAGE,
    CheckFailed,
    InputOutputError,
    UsageError,
    check_writable_dir,
    check_writable_file,
    exit_code,
    main_guard,
    one_line,
    writable_dir,
)
from fldata.datasets import DataError, DataNotFoundError


class ToolConfigError(ValueError):
    """Stands for a CLI's own config error type (deepfl's ConfigError is a ValueError too)."""


@pytest.mark.parametrize(
    "error, code",
    [
        (UsageError("bad flag"), EXIT_USAGE),
        (ToolConfigError("bad key"), EXIT_USAGE),
        (InputOutputError("cannot write"), EXIT_IO),
        (PermissionError("denied"), EXIT_IO),
        (DataNotFoundError("no mnist"), EXIT_IO),
        (
            DataError("truncated file"),
            EXIT_IO,
        ),  # a ValueError, but the more specific DataError decides
        (CheckFailed("diverged"), EXIT_CHECK_FAILED),
        (KeyError("a bug"), None),  # not an expected error: keeps its traceback
    ],
)
def test_exit_code_picks_the_most_specific_class(error: BaseException, code: int | None) -> None:
    assert exit_code(error, usage=(ToolConfigError, ValueError)) == code


def test_main_guard_prints_one_line_and_lets_bugs_raise(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> int:
        raise DataNotFoundError(
            "data set 'mnist' not found; searched:\n  - /a\n  - /b\nto get it: pip install x"
        )

    assert main_guard(fails) == EXIT_IO
    assert (
        capsys.readouterr().err
        == "error: data set 'mnist' not found; searched; to get it: pip install x\n"
    )
    assert main_guard(lambda: 0) == 0

    def bug() -> int:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        main_guard(bug)


def test_one_line_of_an_empty_message_names_the_type() -> None:
    assert one_line(InputOutputError()) == "InputOutputError"


def test_writable_checks_create_nothing_and_name_the_problem(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert check_writable_dir(target, "--out") == target and not (tmp_path / "a").exists()
    assert writable_dir(target, "--out").is_dir()
    assert list(target.iterdir()) == []  # the probe file is gone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(
        InputOutputError, match=r"--out .*file/run cannot be created: .*file is not a folder"
    ):
        check_writable_dir(blocker / "run", "--out")
    with pytest.raises(InputOutputError, match="is a folder; give a file name"):
        check_writable_file(tmp_path, "--json")
    with pytest.raises(InputOutputError, match="not writable"):
        check_writable_dir(
            "/proc/fliplab-test/out", "--out"
        )  # /proc takes no new files, not even root's
