"""ORACLE baselines of paper App. A.12 (Table 10): harden with triggers that are NOT inverted.

These are NOT defenses a benign client could run: they exist only to measure how much trigger
quality matters.

* ``"oracle-random-white"``: a random-shape trigger, pattern 1.0 (fldata.triggers.random_trigger);
* ``"oracle-random-colourful"``: a random-shape trigger with a random colour per pixel;
* ``"oracle-ground-truth"``: the attack's TRUE trigger, which must be handed over explicitly
  (``FlipDefense(true_trigger=...)`` or config ``true_trigger_dba_scale``).

The random shapes have as many pixels as the true trigger (the only thing they borrow from it;
the DBA trigger of ``true_trigger_dba_scale`` or scale 1 if not given) and are drawn afresh for
every (round, client) from ``oracle_seed``.
"""

from __future__ import annotations

import numpy as np

from fldata.triggers import Trigger, dba_trigger, random_trigger

from .config import FlipConfig

__all__ = ["oracle_trigger", "true_trigger_for"]


def true_trigger_for(
    config: FlipConfig, image_shape: tuple[int, int, int], true_trigger: Trigger | None
) -> Trigger | None:
    """The explicitly provided ground-truth trigger: ``true_trigger`` or the DBA trigger of
    ``config.true_trigger_dba_scale``; None when neither was given."""
    if true_trigger is not None:
        if true_trigger.shape != tuple(image_shape):
            raise ValueError(
                f"true_trigger has shape {true_trigger.shape}; the images are {tuple(image_shape)}."
            )
        return true_trigger
    if config.true_trigger_dba_scale is not None:
        return dba_trigger(image_shape, scale=config.true_trigger_dba_scale)
    return None


def oracle_trigger(
    config: FlipConfig,
    image_shape: tuple[int, int, int],
    round_index: int,
    client_id: int,
    true_trigger: Trigger | None = None,
) -> Trigger:
    """The App. A.12 oracle trigger selected by ``config.inverter`` (module docstring)."""
    truth = true_trigger_for(config, image_shape, true_trigger)
    if config.inverter == "oracle-ground-truth":
        if truth is None:
            raise ValueError(
                "inverter='oracle-ground-truth' needs the true trigger: pass "
                "FlipDefense(true_trigger=...) or set true_trigger_dba_scale."
            )
        return Trigger(truth.mask, truth.pattern, name=f"oracle-ground-truth[{truth.name}]")
    if config.inverter not in ("oracle-random-white", "oracle-random-colourful"):
        raise ValueError(
            f"{config.inverter!r} is not an oracle inverter; allowed: oracle-random-white, "
            "oracle-random-colourful, oracle-ground-truth."
        )
    num_pixels = (truth or dba_trigger(image_shape)).num_pixels()
    seed = int(
        np.random.SeedSequence(
            [config.oracle_seed, int(round_index), int(client_id)]
        ).generate_state(1)[0]
    )
    return random_trigger(
        image_shape, num_pixels, colourful=config.inverter == "oracle-random-colourful", seed=seed
    )
