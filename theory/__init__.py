"""Exact float64 checks of FLIP's theory (ICLR 2023): Theorem 1, Theorem 2, Corollary 1.

Modules (THEORY.md sections in brackets): :mod:`theory.theorem1` (3), :mod:`theory.frozen` (2, 5),
:mod:`theory.theorem2` (6), :mod:`theory.corollary1` (7), :mod:`theory.paper_reference` (7.4),
:mod:`theory.symbolic` (sympy cross-checks), :mod:`theory.analysis` (one realised round, section
10), :mod:`theory.results` (the typed, serialisable results of one round), :mod:`theory.verify` (the
``python -m theory.verify`` command line), :mod:`theory.verify_protocol` (what it runs),
:mod:`theory.verify_report` (its JSON and console output), :mod:`theory.report` (check records),
:mod:`theory.saved_state`. numpy/scipy/sympy only (never torch).
"""
