"""The errors a user can fix: one base class, importing nothing from the project.

Each is raised where the problem is found (the loader, the collection scanner, the config
reader, the model loader, the exporter) with a message that names the problem; the CLI prints
it as one line and the app shows it in the page, neither shows a traceback. Every module can
import this leaf without pulling in the CLI or the app, so no import cycle runs through it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is one line, safe to show (exit status 2 in the CLI)."""


class ConfigError(UserError, ValueError):
    """A configuration file or option that cannot be used as written."""


class CollectionError(UserError, ValueError):
    """A folder that does not hold a usable chest X-ray collection."""


class ImageLoadError(UserError, ValueError):
    """An input that is not a usable image; ``code`` names the kind of problem for tables and APIs."""

    code = "unreadable"


class ModelLoadError(UserError, RuntimeError):
    """A model folder that is missing, incomplete, corrupt or tampered with."""


class ExportError(UserError, RuntimeError):
    """The model could not be exported to ONNX."""


class HeatmapUnavailableError(UserError, RuntimeError):
    """A heatmap was asked of a predictor that has no PyTorch network (loaded from an .onnx file)."""


USER_ERRORS: tuple[type[Exception], ...] = (UserError, FileNotFoundError)
"""What every front end reports as one line instead of a traceback."""



def failure_message(exc: BaseException) -> str:
    """One line for a file that could not be scored, safe to show anywhere (page, API, CSV): the
    message of an error the user can fix, otherwise only the exception's type (its text may hold
    internals)."""
    if isinstance(exc, USER_ERRORS):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        return "not enough memory to decode this image"
    return f"the image could not be processed ({type(exc).__name__})"


__all__ = [
    "USER_ERRORS", "failure_message", "CollectionError", "ConfigError", "ExportError", "HeatmapUnavailableError",
    "ImageLoadError", "ModelLoadError", "UserError",
]
