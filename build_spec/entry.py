"""Entry point of the packaged app (PyInstaller runs this file)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from unetpp_gui.ui.app import main

    sys.exit(main())
