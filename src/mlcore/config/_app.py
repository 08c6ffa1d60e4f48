"""The whole validated configuration for one environment, loaded at start-up."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlcore.config._env import EnvSettings, read_env
from mlcore.config._loader import load_policy
from mlcore.config._schemas import (
    BacktestPolicy,
    CorePolicy,
    CostTable,
    DataRetentionPolicy,
    DrawdownPolicy,
    FeatureOrderPolicy,
    FeaturePolicy,
    MlCoreStoragePolicy,
    PipelinePolicy,
    RetrainPolicy,
    RunbookPolicy,
    ServingPolicy,
    SourcesPolicy,
    StoragePolicy,
    TrainingPolicy,
    UniversePolicy,
)
from mlcore.config._schemas_feedback import (
    AnalyticsPolicy,
    ObservabilityPolicy,
    SignalsPolicy,
    SlackPolicy,
)
from mlcore.config._workspace import (
    MARKER,
    UNIVERSE_HEADER,
    Workspace,
    read_workspace,
    workspace_of,
)
from mlcore.errors import ConfigError


@dataclass(frozen=True)
class StoragePaths:
    """Absolute roots of every data layer."""

    archive: Path
    raw: Path
    canonical: Path
    features: Path
    snapshots: Path
    catalog: Path
    models: Path
    reports: Path
    artifacts: Path
    serving: Path | None = None

    def roots(self) -> dict[str, Path]:
        """Each data layer's folder by the policy key that sets it."""
        named = {
            "raw_root": self.raw,
            "canonical_root": self.canonical,
            "features_root": self.features,
            "snapshots_root": self.snapshots,
            "catalog_root": self.catalog,
            "models_root": self.models,
            "reports_root": self.reports,
            "artifact_store_root": self.artifacts,
        }
        if self.serving is not None:
            named["serving_root"] = self.serving
        return named


@dataclass(frozen=True)
class AppConfig:
    """Every policy file and ENV, validated; paths resolved."""

    env_name: str
    config_root: Path
    env: EnvSettings
    storage: StoragePolicy
    ml_core_storage: MlCoreStoragePolicy
    pipeline: PipelinePolicy
    sources: SourcesPolicy
    data_retention: DataRetentionPolicy
    universe: UniversePolicy
    core: CorePolicy
    features: FeaturePolicy
    feature_order: FeatureOrderPolicy
    training: TrainingPolicy
    costs: CostTable
    drawdown: DrawdownPolicy
    backtest: BacktestPolicy
    retrain: RetrainPolicy
    serving: ServingPolicy
    runbook: RunbookPolicy
    observability: ObservabilityPolicy
    slack: SlackPolicy
    analytics: AnalyticsPolicy
    signals: SignalsPolicy
    paths: StoragePaths
    #: The workspace whose configs/ is ``config_root`` (None: the shipped configs alone).
    workspace: Workspace | None = None

    @property
    def base_root(self) -> Path:
        """The shipped configs folder (holding base/ and envs/) under any workspace overlay."""
        return self.workspace.base_root if self.workspace is not None else self.config_root

    def config_files(self) -> list[Path]:
        """Every YAML of the shipped configs and of the workspace overlay, sorted."""
        files = sorted(self.base_root.rglob("*.yaml"))
        if self.workspace is not None:
            files += sorted(self.workspace.configs.glob("*.yaml"))
        return files


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base / p)


#: the configs/ folder of the checkout this package runs from (src/mlcore/config/ -> the repo)
SHIPPED = Path(__file__).resolve().parents[3] / "configs"


def find_config_root(start: Path | None = None) -> Path:
    """Find the config root from ``MLCORE_CONFIG_ROOT``, ``MLCORE_WORKSPACE`` (its configs/),
    or by walking up from ``start`` (cwd) to the nearest workspace marker (its configs/) or
    ``configs/base`` folder (the shipped configs); else the checkout's own shipped configs."""
    explicit = os.environ.get("MLCORE_CONFIG_ROOT")
    if explicit:
        root = Path(explicit)
        if not (root / "base").is_dir():
            raise ConfigError(
                "CONFIG_ROOT_MISSING",
                f"MLCORE_CONFIG_ROOT={explicit} has no base/ folder of policy files",
            )
        return root.resolve()
    workspace = os.environ.get("MLCORE_WORKSPACE")
    if workspace:
        return read_workspace(Path(workspace)).configs
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / MARKER).is_file():
            return read_workspace(d).configs
        if (d / "configs" / "base").is_dir():
            return d / "configs"
        _refuse_markerless_workspace(d)
    if (SHIPPED / "base").is_dir():
        # Outside any workspace or checkout (`mlcore init ~/work` from the home folder): the
        # configs of the checkout this package is installed from (an editable install).
        return SHIPPED
    raise ConfigError(
        "CONFIG_ROOT_MISSING",
        f"no workspace and no configs/base folder found from {here} upwards, and this "
        "installation has no shipped configs: run inside a workspace (`mlcore init DIR`) or "
        "the project, or set MLCORE_CONFIG_ROOT",
    )


def _refuse_markerless_workspace(folder: Path) -> None:
    """A folder whose ``configs/universe.yaml`` is one ``mlcore init`` wrote, but without its
    marker (deleted, renamed): its commands would silently use the shipped configs and the
    project's archive."""
    overlay = folder / "configs" / "universe.yaml"
    try:
        with overlay.open("rb") as fh:
            first = fh.readline(200)
    except OSError:
        return
    if first.decode("utf-8", "replace").rstrip("\r\n") == UNIVERSE_HEADER.splitlines()[0]:
        raise ConfigError(
            "CONFIG_WORKSPACE_INVALID",
            f"{folder} holds a workspace's configs/ but no {MARKER} (deleted or renamed?): "
            "restore it (format_version: 1, kind: user, base_config_root: the project's "
            "configs/ folder), or the commands here would use the shipped configs and archive",
            details={"path": str(folder)},
        )


def _probe(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written (None when it can)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A name of its own per call: two commands of one process (threads) probing at once
        # shared a pid-named file, and one's unlink made the other's fail.
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = "it is a file, not a folder" if folder.is_file() else exc.strerror or str(exc)
        where = "" if exc.filename in (None, str(folder)) else f" ({exc.filename})"
        return f"{why}{where}"
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_archive(paths: StoragePaths) -> None:
    """Refuse an archive folder that cannot be created or written (ConfigError, exit 2), and
    any data root that is a file or, outside the archive, cannot be created or written.

    Every command that reads or writes the archive calls this once, so an unusable
    ``ARCHIVE_PATH`` (or root) is one line naming the folder and the OS reason.
    """
    folder = paths.archive
    why = _probe(folder)
    if why is not None:
        raise ConfigError(
            "DATA_ARCHIVE_UNUSABLE",
            f"archive folder {folder} cannot be used (ARCHIVE_PATH or storage.yaml "
            f"archive_path): {why}",
            details={"path": str(folder)},
        )
    archive = Path(os.path.abspath(folder))
    for key, root in paths.roots().items():
        if _inside(Path(os.path.abspath(root)), archive):
            # Created on first use; only one that is already a file is refused now.
            why = "it is a file, not a folder" if root.exists() and not root.is_dir() else None
        else:
            why = _probe(root)
        if why is not None:
            raise ConfigError(
                "DATA_ARCHIVE_UNUSABLE",
                f"storage folder {root} ({key}) cannot be used: {why}",
                details={"path": str(root), "key": key},
            )


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable parent
        return Path(os.path.abspath(path))


def check_roots_apart(paths: StoragePaths, registry_db: Path) -> None:
    """Refuse data roots that coincide or nest (ConfigError, exit 2): each layer's writes would
    overwrite or prune another's (raw_root == canonical_root)."""
    named = {key: _real(p) for key, p in paths.roots().items()}
    named["registry.db"] = _real(registry_db)  # the SQLite registry, when POSTGRES_URL is unset
    keys = list(named)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            pa, pb = named[a], named[b]
            if pa == pb:
                why = f"{a} and {b} are the same folder {pa}"
            elif _inside(pb, pa):
                why = f"{b} ({pb}) is inside {a} ({pa})"
            elif _inside(pa, pb):
                why = f"{a} ({pa}) is inside {b} ({pb})"
            else:
                continue
            raise ConfigError(
                "CONFIG_STORAGE_OVERLAP",
                f"ml_core_storage.yaml / serving_policy.yaml: {why}; every data root needs "
                "its own folder, none inside another",
                details={"keys": [a, b]},
            )


def load_config(config_root: Path | None = None, env_name: str | None = None) -> AppConfig:
    """Validate ENV and every policy file of the environment; stop on the first bad one."""
    env = read_env(service_env=env_name)
    root = (config_root or find_config_root()).resolve()
    workspace = workspace_of(root)
    shipped = workspace.base_root if workspace is not None else root
    if workspace is not None:
        _check_workspace_files(workspace, shipped)
    name = env.service_env
    storage = load_policy(root, "storage", name, StoragePolicy)
    layout = load_policy(root, "ml_core_storage", name, MlCoreStoragePolicy)
    pipeline = load_policy(root, "pipeline_policy", name, PipelinePolicy)
    sources = load_policy(root, "sources", name, SourcesPolicy)
    retention = load_policy(root, "data_retention", name, DataRetentionPolicy)
    universe = load_policy(root, "universe", name, UniversePolicy)
    core = load_policy(root, "core_policy", name, CorePolicy)
    features = load_policy(root, "feature_policy", name, FeaturePolicy)
    feature_order = load_policy(root, "feature_order", name, FeatureOrderPolicy)
    training = load_policy(root, "training_policy", name, TrainingPolicy)
    costs = load_policy(root, "cost_table", name, CostTable)
    drawdown = load_policy(root, "dd_policy", name, DrawdownPolicy)
    backtest = load_policy(root, "backtest_policy", name, BacktestPolicy)
    retrain = load_policy(root, "retrain_policy", name, RetrainPolicy)
    serving = load_policy(root, "serving_policy", name, ServingPolicy)
    runbook = load_policy(root, "runbook_policy", name, RunbookPolicy)
    observability = load_policy(root, "observability_policy", name, ObservabilityPolicy)
    slack = load_policy(root, "slack_policy", name, SlackPolicy)
    analytics = load_policy(root, "analytics_policy", name, AnalyticsPolicy)
    signals = load_policy(root, "signals_policy", name, SignalsPolicy)
    if training.optuna.storage == "postgres" and not env.postgres_url:
        raise ConfigError(
            "CONFIG_ENTRY_INVALID",
            "training_policy.yaml: key 'optuna.storage': postgres needs POSTGRES_URL (the "
            "database the shared Optuna studies live in)",
            details={"file": str(shipped / "base" / "training_policy.yaml"), "key": "optuna"},
        )
    for file, tf in (("retrain_policy.yaml", retrain.timeframe),
                     ("serving_policy.yaml", serving.timeframe)):  # fmt: skip
        try:
            core.labels_at(tf)
            backtest.execution_at(tf)
            serving.valid_seconds_at(tf)
        except ConfigError as exc:  # the scheduled flow (or the workers) would fail each run
            raise ConfigError(
                exc.code,
                f"{file}: key 'timeframe' is {tf}, but {exc.message}",
                details={**exc.details, "file": file, "key": "timeframe"},
            ) from None
    unknown = sorted(set(costs.overrides) - set(universe.instruments))
    if unknown:
        raise ConfigError(
            "CONFIG_ENTRY_INVALID",
            f"cost_table.yaml: key 'overrides': {unknown} are not instruments of universe.yaml",
            details={"file": str(shipped / "base" / "cost_table.yaml"), "key": "overrides"},
        )
    if env.storage_backend is not None:
        storage = storage.model_copy(update={"backend": env.storage_backend})
    if storage.backend != "local":
        raise ConfigError(
            "CONFIG_STORAGE_UNSUPPORTED",
            f"storage backend {storage.backend!r} is configured, but this build stores "
            "canonical data on the local backend only",
            details={"file": str(shipped / "base" / "storage.yaml"), "key": "backend"},
        )
    # Relative archive paths are relative to the project folder holding configs/ (a workspace's
    # own folder). ARCHIVE_PATH wins, but never in the demo's workspace: it keeps its own.
    archive_env = None if workspace is not None and workspace.kind == "demo" else env.archive_path
    archive = _resolve(root.parent, archive_env or storage.archive_path)
    paths = StoragePaths(
        archive=archive,
        raw=_resolve(archive, layout.raw_root),
        canonical=_resolve(archive, layout.canonical_root),
        features=_resolve(archive, layout.features_root),
        snapshots=_resolve(archive, layout.snapshots_root),
        catalog=_resolve(archive, layout.catalog_root),
        models=_resolve(archive, layout.models_root),
        reports=_resolve(archive, layout.reports_root),
        artifacts=_resolve(archive, layout.artifact_store_root),
        serving=_resolve(archive, serving.serving_root),
    )
    check_roots_apart(paths, archive / "registry" / "registry.db")
    if workspace is None or workspace.kind != "demo":
        _refuse_demo_archive(archive)
    return AppConfig(
        env_name=name,
        config_root=root,
        env=env,
        storage=storage,
        ml_core_storage=layout,
        pipeline=pipeline,
        sources=sources,
        data_retention=retention,
        universe=universe,
        core=core,
        features=features,
        feature_order=feature_order,
        training=training,
        costs=costs,
        drawdown=drawdown,
        backtest=backtest,
        retrain=retrain,
        serving=serving,
        runbook=runbook,
        observability=observability,
        slack=slack,
        analytics=analytics,
        signals=signals,
        paths=paths,
        workspace=workspace,
    )


def _refuse_demo_archive(archive: Path) -> None:
    """Refuse an archive (``ARCHIVE_PATH``, ``storage.yaml archive_path``) inside the demo's
    workspace for any configuration but the demo's: each ``mlcore demo`` removes that folder,
    and its synthetic bars would be merged with the user's."""
    here = _real(archive)
    for d in (here, *here.parents):
        if (d / MARKER).is_file():
            try:
                kind = read_workspace(d).kind
            except ConfigError:
                return
            if kind == "demo":
                raise ConfigError(
                    "CONFIG_ARCHIVE_IN_DEMO",
                    f"archive {archive} (ARCHIVE_PATH or storage.yaml archive_path) is inside "
                    f"the demo's workspace {d}, which each `mlcore demo` removes and fills with "
                    "its synthetic market: choose an archive of your own",
                    details={"path": str(archive)},
                )
            return


def _check_workspace_files(workspace: Workspace, shipped: Path) -> None:
    """Refuse a workspace overlay file no shipped policy file matches (a mistyped name would
    otherwise be silently ignored)."""
    known = {p.name for p in (shipped / "base").glob("*.yaml")}
    if not workspace.configs.is_dir():
        raise ConfigError(
            "CONFIG_WORKSPACE_INVALID",
            f"{workspace.configs}: the workspace's configs/ folder is missing or not a folder; "
            "make it (an empty folder overlays nothing)",
            details={"file": str(workspace.configs)},
        )
    for path in sorted(workspace.configs.iterdir()):
        if path.name == ".git":  # governed configs: the folder is a git repository
            continue
        if path.is_dir():
            raise ConfigError(
                "CONFIG_WORKSPACE_UNKNOWN_FILE",
                f"{path}: a workspace's overlays are files directly in configs/ (the env "
                f"overlays are the shipped ones, {shipped / 'envs'})",
                details={"file": str(path)},
            )
        if path.suffix.lower() in (".yaml", ".yml") and path.name not in known:
            raise ConfigError(
                "CONFIG_WORKSPACE_UNKNOWN_FILE",
                f"{path}: no shipped policy file {shipped / 'base' / path.name} to overlay; "
                f"a workspace overlays one of {sorted(known)}",
                details={"file": str(path)},
            )
