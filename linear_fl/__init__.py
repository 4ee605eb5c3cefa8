"""linear_fl: an exact float64 numpy FedAvg engine for multi-class logistic regression (THEORY.md
section 10).

Modules, one job each: ``model`` (loss, softmax, gradient), ``config``
(``LinearFLConfig``), ``data`` (flattening, stamping rows, random streams),
``training`` (local gradient descent), ``server`` (FedAvg), ``pretrain``
(cached clean pre-training), ``attack`` (malicious client), ``stamped``
(logits/gradients of stamped inputs), ``inversion`` (trigger inversion),
``defense`` (benign FLIP client), ``trigger_error``, ``twin`` (twin runs),
``probe`` (one-round probe and closed-form Delta W), ``state`` (save/load),
``lbfgsb`` (SciPy's L-BFGS-B on the unit box without per-call set-up),
``parallel`` (tasks shared with the twin run's background thread).
numpy/scipy only; never imports torch.
"""

from .config import LinearFLConfig
from .probe import Probe, one_round_probe
from .state import load_state, save_state
from .twin import Setup, TwinResult, prepare, run_twin

__all__ = [
    "LinearFLConfig",
    "Probe",
    "Setup",
    "TwinResult",
    "load_state",
    "one_round_probe",
    "prepare",
    "run_twin",
    "save_state",
]
