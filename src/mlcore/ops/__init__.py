"""The control plane's domain (no web framework here): what halt, flatten and resume do to the
ops flags, and the two-person resume with its canary."""

from mlcore.ops._flagset import HaltLevel, halted
from mlcore.ops._resume import (
    ResumeBook,
    ResumeRecord,
    ResumeRefused,
    canary_split,
    canonical_sha256,
)

__all__ = [
    "HaltLevel",
    "ResumeBook",
    "ResumeRecord",
    "ResumeRefused",
    "canary_split",
    "canonical_sha256",
    "halted",
]
