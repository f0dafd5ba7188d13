"""Model families. Importing this package registers every family and preset."""

from . import activator, hyena, jamba, transformer, vit  # noqa: F401
