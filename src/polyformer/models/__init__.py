"""Model families. Importing this package registers every family and preset."""

from . import activator, transformer, vit  # noqa: F401
