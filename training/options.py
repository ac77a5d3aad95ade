"""The one list of each training choice, shared by the trainer, its command line and the GUI dialog.

Importing this module loads nothing heavy (no TensorFlow, no Keras), so the dialog can use it.
"""

ARCHITECTURES = ("unetpp", "unet")
LOSS_NAMES = ("bce", "bce_dice")  # keys of training.losses.LOSSES
LR_SCHEDULES = ("cosine", "constant")
NORMALIZATIONS = ("auto", "none", "channel")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
SPLITS = ("test", "validation", "all")  # which stored patient split `unetpp evaluate` reads
