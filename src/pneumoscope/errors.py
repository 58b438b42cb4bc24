"""The errors a user can fix, gathered so that every front end reports them the same way.

Each is raised where the problem is found (the loader, the collection scanner, the config
reader, the model loader) with a message that names the problem; the CLI prints it as one
line and the app shows it in the page, neither shows a traceback.
"""

from __future__ import annotations

from pneumoscope.config import ConfigError
from pneumoscope.data.collection import CollectionError
from pneumoscope.data.images import ImageLoadError
from pneumoscope.models.bundle import ModelLoadError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CollectionError, ImageLoadError, ModelLoadError, FileNotFoundError)

__all__ = ["USER_ERRORS", "ConfigError", "CollectionError", "ImageLoadError", "ModelLoadError"]
