"""Independent tasks shared between the calling thread and one helper thread.

The twin run (:mod:`linear_fl.twin`) keeps a one-thread executor for the no-defense twin. While the
defense twin inverts triggers, that thread also takes candidate classes whenever it is free
(:func:`run_shared`). Each task runs exactly once, on one thread, with single-threaded BLAS, so its
result does not depend on which thread ran it: the results are bitwise those of running the tasks
one after another. NumPy and BLAS release the GIL inside their loops, so the two threads overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit every loaded BLAS (NumPy's and SciPy's own, which L-BFGS-B uses) to ``limit``
    threads inside the block; ``None`` leaves them as they are.

    One thread per BLAS call is what the twin run assumes (module docstring): with two tasks
    running at once, a multi-threaded BLAS oversubscribes the cores, and its other summation order
    changes the chaotic FLIP twin's last bits (README, "Linear Table 3")."""
    if limit is None:
        yield
        return
    if limit < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {limit!r}")
    import scipy.optimize  # noqa: F401  (loads SciPy's bundled BLAS, so the limit reaches it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def blas_thread_count() -> int:
    """The most threads any loaded BLAS uses now (part of cache keys: another count sums in
    another order, and the chaotic FLIP twin amplifies the last bits)."""
    from threadpoolctl import threadpool_info

    counts = [int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts, default=1)


def run_shared(tasks: Sequence[Callable[[], T]], helper: Executor | None = None) -> list[T]:
    """Run every task once and return the results in task order.

    This thread claims tasks one by one; with ``helper``, a claiming loop is also submitted to it
    and takes whatever is left when the helper gets to it (after the work queued before it). An
    exception of any task is re-raised here after all claimed tasks have finished.
    """
    n = len(tasks)
    if helper is None or n < 2:
        return [task() for task in tasks]
    outcomes: list[tuple[bool, object]] = [(False, None)] * n
    finished = [threading.Event() for _ in range(n)]
    lock, next_task = threading.Lock(), [0]

    def claim_and_run() -> None:
        while True:
            with lock:
                i = next_task[0]
                next_task[0] += 1
            if i >= n:
                return
            try:
                outcomes[i] = (True, tasks[i]())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                outcomes[i] = (False, exc)
            finally:
                finished[i].set()

    helper.submit(claim_and_run)
    claim_and_run()
    for event in finished:
        event.wait()
    for ok, value in outcomes:
        if not ok:
            raise value  # type: ignore[misc]
    return [value for _, value in outcomes]  # type: ignore[misc]
