"""The control plane's domain (no web framework here): what halt, flatten and resume do to the
ops flags, and the two-person resume with its canary."""

from mlcore.ops._flagset import HaltLevel, halted

__all__ = ["HaltLevel", "halted"]
