"""squirrel: store ML datasets as samples and shards, and stream them back fast."""

__all__ = ["__version__"]

__version__ = "0.1.0"
