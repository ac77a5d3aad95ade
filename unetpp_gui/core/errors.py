"""Errors whose messages are meant for the user, not for a traceback."""


class UserFacingError(Exception):
    """Base class: ``str(err)`` is a complete sentence a user can act on."""


class ModelError(UserFacingError):
    """A model file cannot be used (missing, not a model, unsafe, wrong shape)."""


class ImageError(UserFacingError):
    """An image file cannot be read or is not a usable slice."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
