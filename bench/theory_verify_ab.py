"""A/B benchmark: ``python -m theory.verify --round 50`` of this tree against a baseline commit,
interleaved.

Usage:  python bench/theory_verify_ab.py [--baseline 4fe4d89] [--pairs 2] [--round 50] [-- extra
verify args]

Exports the baseline commit with ``git archive`` into a temporary folder and runs the command
alternately from the baseline and from this working tree (baseline first in each pair), one BLAS
thread (``--blas-default``: the BLAS thread variables unset, as a user types the command), the
same pre-training cache. For each run it prints the wall time, the CPU time of the child
(user + sys) and the load average before it; then whether the printed outputs are identical, and as
its last line the ratios of the summed wall and CPU times. On a shared machine interleaving keeps
both sides under similar load.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_verify(tree: Path, args: list[str], pin_blas: bool = True) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds and stdout of one ``theory.verify`` run from ``tree``
    (``pin_blas``: with the BLAS thread variables set to 1)."""
    blas = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if pin_blas or k not in blas}
    env["PYTHONPATH"] = str(tree)
    if pin_blas:
        env.update(dict.fromkeys(blas, "1"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "theory.verify", "--no-progress", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (
        wall,
        cpu,
        "\n".join(line for line in done.stdout.splitlines() if not line.startswith("wrote ")),
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--baseline",
        default="4fe4d89",
        help="commit to compare with (default: before the speed work)",
    )
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument(
        "--blas-default",
        action="store_true",
        help="leave the BLAS thread variables unset: each side runs the command as a user types "
        "it (each tree's own BLAS default; outputs then differ where the thread counts do)",
    )
    ap.add_argument("--round", default="50")
    ap.add_argument("extra", nargs="*", help="more theory.verify arguments (after --)")
    args = ap.parse_args()
    verify_args = ["--round", args.round, *args.extra]
    totals = {"baseline": [0.0, 0.0], "this tree": [0.0, 0.0]}
    outputs: dict[str, set[str]] = {"baseline": set(), "this tree": set()}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for pair in range(1, args.pairs + 1):
            for name, tree in (("baseline", Path(tmp)), ("this tree", ROOT)):
                load = os.getloadavg()[0]
                wall, cpu, out = run_verify(tree, verify_args, pin_blas=not args.blas_default)
                totals[name][0] += wall
                totals[name][1] += cpu
                outputs[name].add(out)
                print(
                    f"pair {pair} {name:9s}: wall {wall:6.1f} s, CPU {cpu:5.1f} s (load average "
                    f"before {load:.1f})",
                    flush=True,
                )
    same = len(outputs["baseline"] | outputs["this tree"]) == 1
    print(f"printed outputs identical across all runs: {same}")
    (bw, bc), (tw, tc) = totals["baseline"], totals["this tree"]
    print(f"baseline {args.baseline} / this tree: wall {bw / tw:.2f}x, CPU {bc / tc:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
