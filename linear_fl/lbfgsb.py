"""L-BFGS-B on the unit box ``[0, 1]^n``: SciPy's solver without its per-call Python set-up.

``scipy.optimize.minimize(method="L-BFGS-B", bounds=[(0, 1)] * n)`` converts the ``n`` bounds
element by element in Python on every call (about 30 ms for the ``n = 3136`` mask-and-pattern
variables of an MNIST trigger, several seconds over the 510 inversions of
``python -m theory.verify --round 50``). :func:`minimize_unit_box` drives the same compiled
routine (``scipy.optimize._lbfgsb.setulb``, the L-BFGS-B code of Byrd, Lu, Nocedal and Zhu) with the
same arguments and the same loop as SciPy's ``_minimize_lbfgsb`` (default ``maxcor=10``,
``ftol=2.22e-9``, ``gtol=1e-5``, ``maxls=20``), so iterates, objective values and evaluation
counts are bitwise those of ``scipy.optimize.minimize``; the tests check this. With a SciPy whose
``setulb`` has another signature (before 1.15) it calls ``scipy.optimize.minimize`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy
from scipy.optimize import minimize

Objective = Callable[..., tuple[float, np.ndarray]]
"""``f(v, *args) -> (value, gradient)``."""

MAXCOR, FTOL, GTOL, MAXLS, MAXFUN = 10, 2.2204460492503131e-09, 1e-5, 20, 15000
_TASK_FG, _TASK_NEW_X = 3, 1


def _compiled_setulb() -> Any:
    """SciPy's compiled ``setulb`` if it has the C signature of SciPy >= 1.15, else ``None``."""
    major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
    if (major, minor) < (1, 15):
        return None
    try:
        from scipy.optimize import _lbfgsb
    except ImportError:
        return None
    return getattr(_lbfgsb, "setulb", None)


_SETULB = _compiled_setulb()


@dataclass(frozen=True)
class BoxResult:
    """The fields of ``scipy.optimize.OptimizeResult`` the engine uses."""

    x: np.ndarray
    fun: float
    nit: int
    nfev: int


def minimize_unit_box(
    objective: Objective, v0: np.ndarray, args: tuple = (), maxiter: int = 15000
) -> BoxResult:
    """Minimise ``objective(v, *args)`` (value and gradient) over ``v in [0, 1]^n`` from ``clip(v0,
    0, 1)``.
    """
    if _SETULB is None:
        return _minimize_scipy(objective, v0, args, maxiter)
    return _minimize_setulb(objective, v0, args, maxiter)


def _minimize_scipy(objective: Objective, v0: np.ndarray, args: tuple, maxiter: int) -> BoxResult:
    """:func:`minimize_unit_box` through ``scipy.optimize.minimize`` (SciPy before 1.15)."""
    res = minimize(
        objective,
        v0,
        args=args,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * v0.size,
        options={"maxiter": maxiter},
    )
    return BoxResult(x=res.x, fun=float(res.fun), nit=int(res.nit), nfev=int(res.nfev))


@dataclass(frozen=True)
class _SetulbWork:
    """The unit-box bounds and the work arrays ``setulb`` updates in place, for ``n`` variables."""

    low: np.ndarray
    up: np.ndarray
    nbd: np.ndarray
    wa: np.ndarray
    iwa: np.ndarray
    task: np.ndarray
    ln_task: np.ndarray
    lsave: np.ndarray
    isave: np.ndarray
    dsave: np.ndarray

    @classmethod
    def for_size(cls, n: int) -> _SetulbWork:
        """Bounds ``[0, 1]`` on each of ``n`` variables and zeroed work arrays (SciPy's sizes)."""
        return cls(
            low=np.zeros(n),
            up=np.ones(n),
            nbd=np.full(n, 2, dtype=np.int32),  # 2 = bounded on both sides
            wa=np.zeros(2 * MAXCOR * n + 5 * n + 11 * MAXCOR * MAXCOR + 8 * MAXCOR),
            iwa=np.zeros(3 * n, dtype=np.int32),
            task=np.zeros(2, dtype=np.int32),
            ln_task=np.zeros(2, dtype=np.int32),
            lsave=np.zeros(4, dtype=np.int32),
            isave=np.zeros(44, dtype=np.int32),
            dsave=np.zeros(29),
        )

    def step(self, x: np.ndarray, f: Any, g: np.ndarray, factr: float) -> None:
        """One call of the compiled ``setulb`` (updates ``x``, ``task`` and the work arrays)."""
        _SETULB(
            MAXCOR,
            x,
            self.low,
            self.up,
            self.nbd,
            f,
            g,
            factr,
            GTOL,
            self.wa,
            self.iwa,
            self.task,
            self.lsave,
            self.isave,
            self.dsave,
            MAXLS,
            self.ln_task,
        )


def _minimize_setulb(objective: Objective, v0: np.ndarray, args: tuple, maxiter: int) -> BoxResult:
    """:func:`minimize_unit_box` by the compiled ``setulb`` in SciPy's ``_minimize_lbfgsb`` loop."""
    n = v0.size
    x = np.array(np.clip(np.asarray(v0, dtype=np.float64).ravel(), 0.0, 1.0), dtype=np.float64)
    work = _SetulbWork.for_size(n)
    task = work.task
    f: Any = np.array(0.0)
    g = np.zeros(n)
    factr = FTOL / np.finfo(float).eps

    def evaluate(at: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(at.copy(), *args)
        return float(value), np.atleast_1d(np.asarray(grad, dtype=np.float64))

    # Like SciPy's ScalarFunction: evaluate at the start point now, later only at points not seen
    # last.
    evaluated_at, cached, nfev, nit = x.copy(), evaluate(x), 1, 0
    while True:
        g = g.astype(np.float64)
        work.step(x, f, g, factr)
        if task[0] == _TASK_FG:
            if not np.array_equal(x, evaluated_at):
                evaluated_at, cached, nfev = x.copy(), evaluate(x), nfev + 1
            f, g = cached
        elif task[0] == _TASK_NEW_X:
            nit += 1
            if nit >= maxiter or nfev > MAXFUN:
                task[0] = 5  # STOP, as SciPy does at the iteration / evaluation limit
                task[1] = 504 if nit >= maxiter else 502
        else:
            break
    return BoxResult(x=x, fun=float(f), nit=nit, nfev=nfev)
