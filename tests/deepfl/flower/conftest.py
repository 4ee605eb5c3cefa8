"""The Flower tests share the engine fixtures of tests/deepfl (micro configs on a real MNIST
slice).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
