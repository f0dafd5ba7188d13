"""Model families. Importing this package registers every family and preset."""

from . import transformer, vit  # noqa: F401
