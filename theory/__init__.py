"""Exact float64 checks of FLIP's theory (ICLR 2023): Theorem 1, Theorem 2, Corollary 1.

Modules (THEORY.md sections in brackets): :mod:`theory.theorem1` (3), :mod:`theory.frozen` (2, 5),
:mod:`theory.theorem2` (6), :mod:`theory.corollary1` (7), :mod:`theory.paper_reference` (7.4),
:mod:`theory.symbolic` (sympy cross-checks), :mod:`theory.analysis` (one realised round, section 10),
:mod:`theory.verify` (the ``python -m theory.verify`` command), :mod:`theory.report`,
:mod:`theory.saved_state`. numpy/scipy/sympy only (never torch).
"""
