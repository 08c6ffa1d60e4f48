"""A model version named by an operator (``--model``) cleared for use: a registered one only
once its files match the checksums recorded at registration (restored from the artifact store
first, as the deployed path does), an unregistered folder only when the operator says so, and
then marked as such wherever its results go."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mlcore.errors import MissingInputError
from mlcore.registry._artifacts import failing_files
from mlcore.registry._errors import RegistryError
from mlcore.registry._registry import Registry

log = logging.getLogger("mlcore.registry")


@dataclass(frozen=True)
class CheckedModel:
    """A model version folder cleared for use, and whether the registry vouches for it."""

    version: str
    folder: Path
    registered: bool


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def check_model(
    registry: Registry, folder: Path, *, allow_unregistered: bool, actor: str
) -> CheckedModel:
    """Clear the model version in ``folder`` for use (see the module docstring).

    ``MissingInputError`` ``MODEL_VERSION_UNREGISTERED`` (exit 2) for a folder the registry
    does not hold unless ``allow_unregistered``; ``RegistryError``
    ``REGISTRY_ARTIFACT_DAMAGED`` (exit 1) for files failing the recorded checksums that cannot
    be restored. A copy of a registered version kept elsewhere is checked, never written to.
    """
    version = folder.name
    if not registry.versions.exists(version):
        if not allow_unregistered:
            raise MissingInputError(
                "MODEL_VERSION_UNREGISTERED",
                f"model version {version} ({folder}) is not registered, so nothing vouches for "
                f"its files: register it (`mlcore registry register --model {folder} --notes "
                "...`) or pass --unregistered to use it anyway (its results and signals are "
                "then marked unregistered)",
            )
        log.warning("model version %s (%s) is not registered: used as --unregistered", version,
                    folder)  # fmt: skip
        return CheckedModel(version, folder, registered=False)
    served = registry.served_folder(version)
    if _same(folder, served):
        return CheckedModel(version, registry.checked(version, actor=actor), registered=True)
    bad = failing_files(folder, registry.get(version).checksums)
    if bad:
        shown = ", ".join(f"{name} ({why})" for name, why in sorted(bad.items()))
        raise RegistryError(
            "REGISTRY_ARTIFACT_DAMAGED",
            f"{folder} is a copy of registered model version {version} (served from {served}) "
            f"whose {shown} fail the checksums recorded at registration; not used: name the "
            f"version ({version}) to use the registered copy",
        )
    return CheckedModel(version, folder, registered=True)
