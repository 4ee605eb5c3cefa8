"""Golden-output test: ``python -m theory.verify --round 50`` (continuous and single-shot) prints
and writes the same numbers as the stored outputs in ``results/theory/verify-round50*.{txt,json}``.

The stored files were produced by the engine at commit 4fe4d89, before its speed work. This test
guards any refactor of ``linear_fl`` / ``theory`` (vectorisation, batching, caching) against
changing what the command reports.

Tolerances, and why:

- Console output: every line identical, character for character (numbers are printed with 3-5
  significant digits, so float64 reduction-order noise can never show), except the two numbers that
  measure roundoff themselves (below).
- JSON: every stored key must be there (keys added to the schema later, e.g. ``protocol``, are
  allowed); strings, booleans, integers and nulls exact; floats to a relative ``1e-12``.
- Roundoff measurements: ``DeltaW closed form vs simulated`` and ``F-hat model ... reproduces
  DeltaW`` report the relative difference of two float64 computations of the same matrix, about
  ``3e-15``: this value IS reduction-order noise, so any reordering changes it by 100%. For those
  the test asserts that both the stored and the new value are below ``1e-12`` (the command itself
  requires ``< 1e-10``).

Why ``1e-12`` and not more: it is the level of float64 reduction-order changes (a reordered sum
moves by a few ulps, ``~1e-16`` relative, and the theory's one-shot computations on fixed models
keep it there), far below any real change of a formula or of the protocol (``1e-6`` or more). The
twin run itself, though, is chaotic in float64: discrete choices of the trigger inversion (L-BFGS-B
active sets, the Neural-Cleanse class choice) flip under 1-ulp changes, so another summation order
moves the FLIP twin's ACC/ASR after 50 rounds by tenths of a point
(``results/theory/verify-round50-blas-2-threads.txt``: the same command with two BLAS threads). So
the engine must stay bit for bit what it was, and the stored outputs are reproducible only with the
same BLAS: ``verify-round50.blas.json`` records it (NumPy, SciPy, each BLAS library's version and
kernel), the test runs the command with one BLAS thread and with OpenBLAS forced to the stored
kernel (``OPENBLAS_CORETYPE``), and where that does not give the stored BLAS it is skipped with that
reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import threadpoolctl

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "results" / "theory"
REL_TOL = 1e-12
ROUNDOFF_LEVEL = 1e-12
# JSON keys and check names whose value is the relative difference of two computations of one
# matrix.
ROUNDOFF_KEYS = {"deltaW_rel_error", "frozen_rel_error"}
ROUNDOFF_CHECKS = (
    "DeltaW closed form vs simulated",
    "F-hat model at realised delta reproduces DeltaW",
)
# Wall-clock seconds: not results.
IGNORED_KEYS = {"timings"}
ROUNDOFF_LINE = re.compile(r"(relative error )([-+0-9.e]+)")


def _is_roundoff_check(path: str, golden: dict[str, Any]) -> bool:
    return path.startswith("checks[") and golden.get("name") in ROUNDOFF_CHECKS


def compare_json(golden: Any, new: Any, path: str = "") -> list[str]:
    """Differences between two JSON values under the module's tolerances, as ``path: golden != new``
    lines.
    """
    if isinstance(golden, dict) and isinstance(new, dict):
        missing = set(golden) - IGNORED_KEYS - set(new)
        if missing:
            return [f"{path}: keys {sorted(missing)} missing"]
        roundoff_check = _is_roundoff_check(path, golden)
        out: list[str] = []
        for key in sorted(set(golden) - IGNORED_KEYS):
            sub = f"{path}.{key}" if path else key
            if key in ROUNDOFF_KEYS or (roundoff_check and key in ("actual", "detail")):
                out += _compare_roundoff(golden[key], new[key], sub)
            else:
                out += compare_json(golden[key], new[key], sub)
        return out
    if isinstance(golden, list) and isinstance(new, list):
        if len(golden) != len(new):
            return [f"{path}: length {len(golden)} != {len(new)}"]
        return [
            d
            for i, (g, n) in enumerate(zip(golden, new, strict=True))
            for d in compare_json(g, n, f"{path}[{i}]")
        ]
    if isinstance(golden, float) and isinstance(new, float):
        return (
            []
            if math.isclose(golden, new, rel_tol=REL_TOL, abs_tol=0.0)
            else [f"{path}: {golden!r} != {new!r}"]
        )
    if type(golden) is not type(new) or golden != new:
        return [f"{path}: {golden!r} != {new!r}"]
    return []


def _compare_roundoff(golden: Any, new: Any, path: str) -> list[str]:
    """Both values (or the number after "relative error" in a detail string) at roundoff level."""
    if isinstance(golden, str):
        values = [
            float(m.group(2))
            for m in (ROUNDOFF_LINE.search(golden), ROUNDOFF_LINE.search(new))
            if m
        ]
        if len(values) != 2 or ROUNDOFF_LINE.sub(r"\1#", golden) != ROUNDOFF_LINE.sub(r"\1#", new):
            return [f"{path}: {golden!r} != {new!r}"]
        golden, new = values
    if not (abs(golden) < ROUNDOFF_LEVEL and abs(new) < ROUNDOFF_LEVEL):
        return [f"{path}: roundoff measure {golden!r} / {new!r} not both below {ROUNDOFF_LEVEL:g}"]
    return []


def compare_console(golden: str, new: str) -> list[str]:
    """Line-by-line differences; the roundoff numbers of the DeltaW lines only need to stay below
    1e-12.
    """
    golden_lines = [line for line in golden.splitlines() if not line.startswith("wrote ")]
    new_lines = [line for line in new.splitlines() if not line.startswith("wrote ")]
    if len(golden_lines) != len(new_lines):
        return [f"{len(golden_lines)} lines != {len(new_lines)} lines"]
    out = []
    for g, n in zip(golden_lines, new_lines, strict=True):
        if g == n:
            continue
        if any(name in g for name in ROUNDOFF_CHECKS) and not _compare_roundoff(g, n, "line"):
            continue
        out.append(f"- {g}\n+ {n}")
    return out


def blas_signature() -> dict[str, Any]:
    """NumPy and SciPy versions and each loaded BLAS library's version, kernel and threading layer
    (via threadpoolctl, a core dependency, after importing what ``theory.verify`` uses)."""
    import numpy
    import scipy
    import scipy.optimize  # loads SciPy's own BLAS (L-BFGS-B)

    libraries = sorted(
        (
            Path(info["filepath"]).name,
            info.get("version"),
            info.get("architecture"),
            info.get("threading_layer"),
        )
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    )
    return {
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas": [list(lib) for lib in libraries],
    }


def _stored_kernel_env(stored: dict[str, Any]) -> dict[str, str]:
    """``OPENBLAS_CORETYPE`` set to the kernel of the ``stored`` BLAS signature: OpenBLAS then runs
    those kernels on any CPU that has their instructions (an AMD EPYC with AVX-512 picks Haswell by
    itself, and reproduces the stored outputs bitwise with SkylakeX forced)."""
    kernels = {library[2] for library in stored["blas"]}
    return {"OPENBLAS_CORETYPE": kernels.pop()} if len(kernels) == 1 else {}


def _blas_signature_with(env: dict[str, str]) -> dict[str, Any] | None:
    """:func:`blas_signature` in a fresh interpreter under ``env`` (None where it fails, e.g. a
    forced kernel whose instructions this CPU lacks)."""
    code = "import json, test_verify_golden as t; print(json.dumps(t.blas_signature()))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


def _same_blas_env_or_skip() -> dict[str, str]:
    """The environment that gives the stored BLAS signature (the stored kernel forced where this
    CPU can run it); skips where none does."""
    stored = json.loads((GOLDEN / "verify-round50.blas.json").read_text())
    forced = _stored_kernel_env(stored)
    if _blas_signature_with(forced) == stored:
        return forced
    here = blas_signature()
    pytest.skip(
        f"stored outputs were made with {stored}; this machine has {here} (and cannot run the "
        f"stored kernel, {forced}): the FLIP twin is bitwise reproducible only with the same BLAS "
        "(module docstring)"
    )


def _run_verify(extra: list[str], json_path: Path, blas_env: dict[str, str]) -> str:
    # A cache of its own: a pre-trained model cached by another test with more BLAS threads differs
    # in the last bits, and the FLIP twin amplifies that (module docstring).
    env = {
        **os.environ,
        **blas_env,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "FLIPLAB_CACHE": str(json_path.parent / "cache"),
    }
    cmd = [
        sys.executable,
        "-m",
        "theory.verify",
        "--round",
        "50",
        "--no-progress",
        "--json",
        str(json_path),
        *extra,
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_roundoff_comparison_accepts_noise_and_rejects_changes():
    """The comparator itself: ulp-level noise passes, a 1e-9 change, a changed count or string
    fails.
    """
    golden = {
        "a": 0.123456789,
        "n": 5,
        "s": "x",
        "timings": {"total": 1.0},
        "deltaW_rel_error": 3e-15,
        "checks": [
            {"name": ROUNDOFF_CHECKS[0], "actual": 3e-15, "detail": "relative error 3.00e-15 (ok)"}
        ],
    }
    noisy = {
        **golden,
        "a": 0.123456789 * (1 + 4e-16),
        "timings": {"total": 9.0},
        "deltaW_rel_error": 1e-15,
        "checks": [
            {"name": ROUNDOFF_CHECKS[0], "actual": 1e-15, "detail": "relative error 1.00e-15 (ok)"}
        ],
    }
    assert compare_json(golden, noisy) == []
    assert compare_json(golden, {**golden, "a": 0.123456789 * (1 + 1e-9)})
    assert compare_json(golden, {**golden, "n": 6}) and compare_json(golden, {**golden, "s": "y"})
    assert compare_json(golden, {**golden, "deltaW_rel_error": 2e-11})
    assert compare_json(golden, {**golden, "protocol": "default"}) == []
    assert compare_json(golden, {k: v for k, v in golden.items() if k != "n"})
    line = f"  [PASS] {ROUNDOFF_CHECKS[0]}: relative error {{}} (< 1e-10 required)"
    assert (
        compare_console(
            line.format("2.94e-15") + "\nACC 91.46", line.format("3.10e-15") + "\nACC 91.46"
        )
        == []
    )
    assert compare_console(line.format("2.94e-15"), line.format("2.00e-11"))
    assert compare_console("ACC 91.46", "ACC 91.47")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra",
    [("verify-round50", []), ("verify-round50-single-shot", ["--attack", "single-shot"])],
)
def test_verify_round50_matches_stored_output(name, extra, tmp_path):
    blas_env = _same_blas_env_or_skip()
    json_path = tmp_path / "verify.json"
    out = _run_verify(extra, json_path, blas_env)
    console = compare_console((GOLDEN / f"{name}.txt").read_text(), out)
    assert not console, "console output changed:\n" + "\n".join(console[:20])
    diffs = compare_json(
        json.loads((GOLDEN / f"{name}.json").read_text()), json.loads(json_path.read_text())
    )
    assert not diffs, f"{len(diffs)} JSON values changed:\n" + "\n".join(diffs[:30])


def test_the_signature_probe_in_a_fresh_interpreter_sees_this_process_blas():
    """The probe behind the skip decision reports what this process loaded, under the same env."""
    assert _blas_signature_with({}) == blas_signature()
