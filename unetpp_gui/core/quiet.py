"""Import TensorFlow without its start-up chatter on the user's terminal.

TensorFlow 2.21 prints absl/oneDNN notices from C++ while it is imported, before any log level applies
(``TF_CPP_MIN_LOG_LEVEL`` does not reach them). During the import only, file descriptor 2 points at
/dev/null; real errors raised by the import still arrive as Python exceptions. ``UNETPP_VERBOSE=1`` (or
``--verbose`` where a command has it) keeps everything.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def import_tensorflow() -> None:
    """Import TensorFlow and Keras once, quietly unless UNETPP_VERBOSE is set."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("UNETPP_VERBOSE"):
        _import()
        return
    with _lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                _import()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import() -> None:
    import importlib

    import tensorflow as tf

    importlib.import_module("keras")
    tf.constant(0.0) + 1.0  # the oneDNN notice comes with the first op
