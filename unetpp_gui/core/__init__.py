"""The engine: model IO, image IO, preprocessing, inference, post-processing, metrics.

Never imports Qt. TensorFlow is imported lazily (inside functions) so that importing the engine
is cheap and the GUI can show its window before TensorFlow loads.
"""

from unetpp_gui.core.errors import ImageError, ModelError

__all__ = ["ImageError", "ModelError"]
