"""The paper's theorems on a deep network's last layer (torch-free; issue 15).

A network whose output layer is linear computes ``z = W \\tilde\\phi(x)`` with
``\\tilde\\phi(x) = [\\phi(x); 1]`` the penultimate features and a constant bias feature. The last
layer is therefore the multi-class logistic regression of THEORY.md section 1 with ``x`` replaced by
``\\tilde\\phi(x)``: a round in which only that layer trains satisfies Theorem 1, Theorem 2 and
Corollary 1 exactly on ``\\tilde\\phi(x)``. A full round (all layers train) shows how far the
last-layer bracket carries when the features move too.

* :mod:`theory.deep.state`: the arrays one probe produces (:class:`DeepProbeState`), save / load.
* :mod:`theory.deep.rounds`: per-client hardening rounds, the closed-form ``\\Delta W`` summed over
  benign clients and their stacked frozen-residual model (THEORY.md sections 2, 5).
* :mod:`theory.deep.carry`: the last-layer bracket against the loss change of a full round.
* :mod:`theory.deep.analysis`: every check of one probe, JSON-ready.
* :mod:`theory.deep.cli`: ``python -m theory.verify --deep RUN_DIR --round R`` (torch loaded
  lazily).

The torch side (running the probe rounds of a deepfl run) is :mod:`deepfl.probe`.
"""
