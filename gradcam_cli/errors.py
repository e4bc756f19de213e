"""Error types that carry a message meant for the person at the terminal."""

from __future__ import annotations


class GradcamError(Exception):
    """Base class: ``str(err)`` is a complete one-line explanation."""


class UsageError(GradcamError):
    """The request itself is wrong (model, layer, class, flags): exit code 2, before any work."""


class ImageError(GradcamError):
    """One input image cannot be used; the rest of the batch goes on."""


class MethodError(UsageError):
    """The requested computation (a method, a precision) does not apply to this model, layer or device."""
