"""run_shared: every task once, results in task order, errors re-raised, the helper thread does take
tasks. blas_threads: the limit reaches NumPy's and SciPy's BLAS and is lifted after the block.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import threadpoolctl

from linear_fl.parallel import blas_threads, run_shared


def _task(i: int, seen: list):
    def run() -> int:
        seen.append((i, threading.current_thread().name))
        time.sleep(0.01)
        return i * i

    return run


def test_results_in_order_each_task_once_and_both_threads_work():
    seen: list = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="helper") as helper:
        out = run_shared([_task(i, seen) for i in range(12)], helper)
    assert out == [i * i for i in range(12)]
    assert sorted(i for i, _ in seen) == list(range(12))
    assert {name.startswith("helper") for _, name in seen} == {True, False}
    assert run_shared([_task(i, []) for i in range(3)]) == [0, 1, 4]


def test_a_failing_task_is_reraised_in_the_caller():
    def boom() -> int:
        raise FloatingPointError("task 3 failed")

    tasks = [_task(i, []) for i in range(6)]
    tasks[3] = boom
    with (
        ThreadPoolExecutor(max_workers=1) as helper,
        pytest.raises(FloatingPointError, match="task 3"),
    ):
        run_shared(tasks, helper)


def _blas_threads() -> dict[str, int]:
    return {
        info["filepath"]: info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    }


def test_blas_threads_limits_every_blas_inside_the_block_only():
    with blas_threads(1):
        inside = _blas_threads()
    outside = _blas_threads()
    assert len(inside) >= 2  # NumPy's BLAS and SciPy's bundled one (loaded by blas_threads)
    assert set(inside.values()) == {1}
    with blas_threads(2):
        assert set(_blas_threads().values()) == {2}
        with blas_threads(None):  # leaves the limit as it is
            assert set(_blas_threads().values()) == {2}
    assert _blas_threads() == outside


def test_blas_threads_rejects_a_limit_below_one():
    with pytest.raises(ValueError, match="BLAS threads must be >= 1"):
        with blas_threads(0):
            pass
