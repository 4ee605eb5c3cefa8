"""``python -m theory`` is ``python -m theory.verify``."""

import sys

from theory.verify import main

sys.exit(main())
