"""Serving stage: the supervisor and its single-threaded inference workers, the live bar
sources, ops flags, freshness guards, the outbox and signal delivery (Redis, signal.json,
core.signals_live), and the workers' Prometheus metrics."""

from mlcore.serving._bars import (
    BAR_FIELDS,
    BAR_REASONS,
    Bar,
    BarRejected,
    FileBarSource,
    RedisBarSource,
    bar_message,
    parse_bar,
)
from mlcore.serving._delivery import (
    RedisPublisher,
    aggregate,
    archive_signals,
    deliver,
    write_signal_files,
)
from mlcore.serving._flags import (
    NO_FLAGS,
    Control,
    FlagReader,
    FlagsInvalid,
    FlagStore,
    OpsFlags,
    flag_store,
    flags_from_doc,
    flags_json,
    parse_flags,
    read_flags,
    update_flags,
    write_flags,
)
from mlcore.serving._models import ServedModel, deployed_model, named_model, read_notice
from mlcore.serving._outbox import Outbox
from mlcore.serving._pair import PairRuntime
from mlcore.serving._scorer import INPUT_NAMES, PairScorer
from mlcore.serving._serve import (
    ServeSummary,
    choose_model,
    outbox_counts,
    replay_bars,
    serve,
    write_bars_file,
)
from mlcore.serving._setup import pair_setup, serving_dir
from mlcore.serving._supervisor import Supervisor, assign_pairs
from mlcore.serving._swap import ModelUnusable, SwapRefused
from mlcore.serving._target import ServingTarget, read_target, write_target
from mlcore.serving._worker import (
    EXIT_MODEL_UNUSABLE,
    Worker,
    WorkerSpec,
    worker_main,
)

__all__ = [
    "BAR_FIELDS",
    "BAR_REASONS",
    "EXIT_MODEL_UNUSABLE",
    "INPUT_NAMES",
    "NO_FLAGS",
    "Bar",
    "BarRejected",
    "Control",
    "FileBarSource",
    "FlagReader",
    "FlagStore",
    "FlagsInvalid",
    "ModelUnusable",
    "OpsFlags",
    "Outbox",
    "PairRuntime",
    "PairScorer",
    "RedisBarSource",
    "RedisPublisher",
    "ServeSummary",
    "ServedModel",
    "ServingTarget",
    "Supervisor",
    "SwapRefused",
    "Worker",
    "WorkerSpec",
    "aggregate",
    "archive_signals",
    "assign_pairs",
    "bar_message",
    "choose_model",
    "deliver",
    "deployed_model",
    "flag_store",
    "flags_from_doc",
    "flags_json",
    "named_model",
    "outbox_counts",
    "pair_setup",
    "parse_bar",
    "parse_flags",
    "read_flags",
    "read_notice",
    "read_target",
    "replay_bars",
    "serve",
    "serving_dir",
    "update_flags",
    "worker_main",
    "write_bars_file",
    "write_flags",
    "write_signal_files",
    "write_target",
]
