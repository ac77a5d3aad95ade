"""``python -m unetpp_gui`` starts the desktop app."""

import sys

from unetpp_gui.ui.app import main

sys.exit(main())
