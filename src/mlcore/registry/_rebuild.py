"""Rebuild a model version from its lineage and compare: the same catalog data (``data_hash``),
code (``code_hash``), configuration and seed must give byte-identical model files.

The rebuild trains into a temporary models root, so nothing in service is touched. ``run.json``
(when and by which code it ran) is the one file expected to differ.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from mlcore.config import AppConfig
from mlcore.data import Catalog
from mlcore.registry._errors import RegistryError

_RUN_ONLY = frozenset({"run.json", "checksums.json"})


@dataclass
class RebuildReport:
    """What a rebuild found: identical files, differing ones, and why it may differ."""

    version: str
    identical: list[str]
    differing: list[str]
    missing: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        """True when every recorded file came out byte-identical."""
        return not self.differing and not self.missing


def rebuild(cfg: AppConfig, cat: Catalog, folder: Path) -> RebuildReport:
    """Retrain the version in ``folder`` from its lineage and compare checksums file by file."""
    # Training (scikit-learn, Optuna, ...) loads only for a rebuild: serving imports the registry.
    from mlcore.training import code_hash, train_models

    try:
        sums: dict[str, str] = json.loads((folder / "checksums.json").read_bytes())
        run: dict[str, Any] = json.loads((folder / "run.json").read_bytes())
        params = yaml.safe_load((folder / "params.yaml").read_bytes())
        metrics = json.loads((folder / "metrics.json").read_bytes())
        index = json.loads((folder / "dataset_index_filtered.json").read_bytes())
        pairs = sorted(index["rows_per_pair"]["ai1"])
        timeframe, seed = str(params["timeframe"]), int(params["seed"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise RegistryError(
            "REGISTRY_REBUILD_LINEAGE_UNREADABLE",
            f"{folder}: lineage unreadable ({exc}); is it a model version folder?",
        ) from None
    warnings = []
    now_code = code_hash()
    if now_code != run.get("code_hash"):
        warnings.append(f"code differs: built by {run.get('code_hash')}, now {now_code}")
    direction = bool(metrics.get("direction", {}).get("levels"))
    with tempfile.TemporaryDirectory(prefix="mlcore-rebuild-") as tmp:
        scratch = replace(cfg, paths=replace(cfg.paths, models=Path(tmp)))
        report = train_models(scratch, cat, timeframe, pair_ids=pairs, seed=seed,
                              direction=direction)  # fmt: skip
        new_sums: dict[str, str] = json.loads((report.folder / "checksums.json").read_bytes())
        new_run = json.loads((report.folder / "run.json").read_bytes())
        shutil.rmtree(report.folder, ignore_errors=True)
    if new_run.get("data_hash") != run.get("data_hash"):
        warnings.append(
            f"catalog data differ: built on {run.get('data_hash')}, now {new_run.get('data_hash')}"
        )
    names = sorted(set(sums) - _RUN_ONLY)
    return RebuildReport(
        version=folder.name,
        identical=[n for n in names if new_sums.get(n) == sums[n]],
        differing=[n for n in names if n in new_sums and new_sums[n] != sums[n]],
        missing=[n for n in names if n not in new_sums],
        warnings=warnings,
    )
