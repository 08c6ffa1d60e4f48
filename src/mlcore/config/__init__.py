"""Typed policy configuration and ENV validation."""

from mlcore.config._app import AppConfig, StoragePaths, find_config_root, load_config
from mlcore.config._env import REQUIRED_ENV, EnvSettings, read_env
from mlcore.config._loader import ENVIRONMENTS, load_policy
from mlcore.config._schemas import (
    POLICY_SCHEMAS,
    TIMEFRAMES,
    CalendarSpec,
    DataRetentionPolicy,
    DQThresholds,
    InstrumentSpec,
    MlCoreStoragePolicy,
    PairSpec,
    PipelinePolicy,
    Policy,
    ProviderSpec,
    SourcesPolicy,
    StoragePolicy,
    UniversePolicy,
)

__all__ = [
    "ENVIRONMENTS",
    "POLICY_SCHEMAS",
    "REQUIRED_ENV",
    "TIMEFRAMES",
    "AppConfig",
    "CalendarSpec",
    "DQThresholds",
    "DataRetentionPolicy",
    "EnvSettings",
    "InstrumentSpec",
    "MlCoreStoragePolicy",
    "PairSpec",
    "PipelinePolicy",
    "Policy",
    "ProviderSpec",
    "SourcesPolicy",
    "StoragePaths",
    "StoragePolicy",
    "UniversePolicy",
    "find_config_root",
    "load_config",
    "load_policy",
    "read_env",
]
