"""``python -m deepfl`` is ``python -m deepfl.run``."""

import sys

from deepfl.run import main

sys.exit(main())
