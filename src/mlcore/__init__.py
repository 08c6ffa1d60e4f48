"""ml-assets-core: market bars to trusted machine-learning trading signals."""

__version__ = "0.1.0"
