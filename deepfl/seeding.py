"""Every random stream of a run is derived from (seed, round, client, purpose), never from global
state.

Deriving instead of carrying generators forward makes a resumed run draw exactly the numbers an
uninterrupted run would: the stream of round r does not depend on what rounds < r consumed.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes (the last key of a derived seed), fixed forever so results stay reproducible.
(
    SAMPLING,
    CLIENT_TRAINING,
    SERVER_TRAINING,
    MODEL_INIT,
    ATTACKER_IDS,
    ROOT_SET,
    PARTITION,
    SUBSET,
) = range(8)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys via numpy's SeedSequence (well-mixed, order-sensitive)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def numpy_rng(*keys: int) -> np.random.Generator:
    """numpy Generator for the stream named by ``keys``."""
    return np.random.default_rng(derive_seed(*keys))


def torch_generator(*keys: int) -> torch.Generator:
    """CPU torch.Generator for the stream named by ``keys`` (permutations are drawn on the CPU)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(*keys))
    return generator
