"""run_shared: every task once, results in task order, errors re-raised, the helper thread does take
tasks.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from linear_fl.parallel import run_shared


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
