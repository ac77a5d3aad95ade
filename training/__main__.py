"""``python -m training ...`` is ``unetpp train ...`` / ``unetpp evaluate ...``."""

import sys

from training.cli import main

sys.exit(main())
