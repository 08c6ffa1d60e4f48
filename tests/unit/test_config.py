"""Policy files and ENV: valid everywhere, and every bad value stops start-up with one message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mlcore.config import ENVIRONMENTS, POLICY_SCHEMAS, load_config, load_policy, read_env
from mlcore.config._schemas import CorePolicy, PipelinePolicy
from mlcore.errors import ConfigError
from tests.conftest import CONFIG_ROOT


@pytest.fixture
def root(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(CONFIG_ROOT, dst)
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("name", sorted(POLICY_SCHEMAS))
def test_every_shipped_policy_validates(env: str, name: str) -> None:
    policy = load_policy(CONFIG_ROOT, name, env, POLICY_SCHEMAS[name])
    assert policy.model_config["extra"] == "forbid"


def test_dev_config_loads_with_archive_under_project(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(CONFIG_ROOT, "dev")
    assert cfg.env_name == "dev"
    assert cfg.paths.canonical == CONFIG_ROOT.parent / "var" / "archive" / "canonical"
    assert cfg.pipeline.dq_thresholds.max_fill_bars == 2
    assert cfg.pipeline.dq_thresholds.outlier_sigma == 8.0


def test_overlay_changes_only_what_it_names() -> None:
    dev = load_policy(CONFIG_ROOT, "pipeline_policy", "dev", PipelinePolicy)
    prod = load_policy(CONFIG_ROOT, "pipeline_policy", "prod", PipelinePolicy)
    assert prod.rate_limit.requests_per_minute == 55
    assert dev.rate_limit.requests_per_minute == 8
    assert prod.dq_thresholds == dev.dq_thresholds


def test_missing_key_names_file_and_key(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "retry_max: {value: 4,", "# retry_max: {value: 4,")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)
    assert str(path) in exc.value.message
    assert "'retry_max'" in exc.value.message
    assert "Field required" in exc.value.message


def test_wrong_type_is_refused_not_coerced(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "retry_max: {value: 4,", 'retry_max: {value: "4",')
    with pytest.raises(ConfigError, match=r"key 'retry_max': Input should be a valid integer"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


def test_out_of_range_nested_value_names_full_key(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "missing_rate: 0.02", "missing_rate: 1.5")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)
    assert "key 'dq_thresholds.missing_rate'" in exc.value.message
    assert "less than or equal to 1" in exc.value.message
    assert exc.value.code == "CONFIG_SCHEMA_INVALID"


def test_unknown_key_is_rejected(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    path.write_text(path.read_text() + "\nretry_maxx: {value: 3}\n")
    with pytest.raises(ConfigError, match=r"key 'retry_maxx': Extra inputs are not permitted"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


def test_unknown_nested_key_is_rejected(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "max_fill_bars: 2", "max_fill_bars: 2\n    max_fil_bars: 3")
    with pytest.raises(ConfigError, match=r"dq_thresholds.max_fil_bars"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


def test_cross_field_rule(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "timeframe_default: {value: 1h,", "timeframe_default: {value: 1min,")
    _edit(path, "value: [1min, 5min,", "value: [5min,")
    with pytest.raises(ConfigError, match="timeframe_default '1min' is not in timeframe_allowed"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [("theta1: [0.60, 0.85]", "theta1: [0.85, 0.60]",
      "theta1 must be [low, high] with low < high, got [0.85, 0.6]"),
     ("theta2: [0.20, 0.45]", "theta2: [0.30, 0.30]", "theta2 must be [low, high]"),
     ("theta1_initial: {value: 0.70,", "theta1_initial: {value: 0.95,",
      "theta1_initial 0.95 is outside theta_search_range.theta1 [0.6, 0.85]")],
    ids=["inverted", "empty", "initial outside"],
)  # fmt: skip
def test_theta_ranges_are_checked_before_any_training(
    root: Path, old: str, new: str, fragment: str
) -> None:
    """Issue 16: an inverted θ range passed `config check` and failed after training."""
    _edit(root / "base" / "core_policy.yaml", old, new)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_policy(root, "core_policy", "dev", CorePolicy)


def test_a_binary_or_non_utf8_policy_file_is_named(root: Path) -> None:
    path = root / "base" / "core_policy.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "core_policy", "dev", CorePolicy)
    assert str(path) in exc.value.message and "\x00" not in exc.value.message
    assert exc.value.code in ("CONFIG_YAML_INVALID", "CONFIG_FILE_UNREADABLE")


@pytest.mark.parametrize(
    "yaml_text",
    ["retry_max: {value: &b [*b]}\n",
     "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nretry_max: {value: [*c, *c, *c, *c]}\n"],
    ids=["self-referring alias", "alias bomb"],
)  # fmt: skip
def test_hostile_yaml_is_one_short_config_error(root: Path, yaml_text: str) -> None:
    path = root / "envs" / "dev" / "pipeline_policy.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)
    assert len(exc.value.message) < 2000


@pytest.mark.parametrize(
    "yaml_text",
    ["retry_max: {value: 4, description: a}\nretry_max: {value: 0, description: b}\n",
     "retry_max: {value: 4, value: 0, description: a}\n"],
    ids=["entry twice", "field twice"],
)  # fmt: skip
def test_a_key_given_twice_is_refused_naming_both_lines(root: Path, yaml_text: str) -> None:
    """Review: PyYAML keeps the last of two equal keys, so a second ``archive_path`` further
    down a workspace's storage.yaml silently won (`config check` exit 0)."""
    path = root / "envs" / "dev" / "pipeline_policy.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)
    assert exc.value.code == "CONFIG_YAML_INVALID"
    assert str(path) in exc.value.message and "given twice (first on line 1)" in exc.value.message


def test_bad_yaml_names_line(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    path.write_text("retry_max: {value: 4\npage_size: [\n")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)
    assert exc.value.code == "CONFIG_YAML_INVALID"
    assert str(path) in exc.value.message
    assert "line" in exc.value.message


def test_entry_must_have_value_form(root: Path) -> None:
    path = root / "base" / "pipeline_policy.yaml"
    _edit(path, "retry_max: {value: 4,", "retry_max: {valeu: 4,")
    with pytest.raises(ConfigError, match=r"key 'retry_max': must be an entry"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


def test_missing_policy_file(root: Path) -> None:
    (root / "base" / "pipeline_policy.yaml").unlink()
    with pytest.raises(ConfigError, match=r"pipeline_policy.yaml: cannot read"):
        load_config(root, "dev")


def test_overlay_key_must_exist_in_base(root: Path) -> None:
    path = root / "envs" / "stg" / "pipeline_policy.yaml"
    path.write_text(path.read_text() + "\nnew_knob: {value: 1}\n")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "stg", PipelinePolicy)
    assert exc.value.code == "CONFIG_OVERLAY_UNKNOWN_KEY"
    assert str(path) in exc.value.message


def test_overlay_must_hold_only_differences(root: Path) -> None:
    path = root / "envs" / "dev" / "pipeline_policy.yaml"
    path.write_text("retry_max: {value: 4}\n")
    with pytest.raises(ConfigError, match="repeats the base value"):
        load_policy(root, "pipeline_policy", "dev", PipelinePolicy)


def test_overlay_error_is_attributed_to_overlay_file(root: Path) -> None:
    path = root / "envs" / "stg" / "pipeline_policy.yaml"
    path.write_text("rate_limit: {value: {requests_per_minute: -1}}\n")
    with pytest.raises(ConfigError) as exc:
        load_policy(root, "pipeline_policy", "stg", PipelinePolicy)
    assert exc.value.message.startswith(str(path))
    assert "rate_limit.requests_per_minute" in exc.value.message


def test_unknown_environment() -> None:
    with pytest.raises(ConfigError, match="environment 'qa'"):
        load_policy(CONFIG_ROOT, "pipeline_policy", "qa", PipelinePolicy)


def test_universe_cross_references(root: Path) -> None:
    path = root / "base" / "universe.yaml"
    _edit(path, "{pair_id: XAU_XAG, leg_a: XAU/USD,", "{pair_id: XAU_XAG, leg_a: XPT/USD,")
    with pytest.raises(ConfigError, match="pair 'XAU_XAG' names unknown instrument 'XPT/USD'"):
        load_config(root, "dev")


def test_s3_backend_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    with pytest.raises(ConfigError) as exc:
        load_config(root, "dev")
    assert exc.value.code == "CONFIG_STORAGE_UNSUPPORTED"


# ENV -------------------------------------------------------------------------------------


def test_dev_needs_no_env() -> None:
    env = read_env({})
    assert env.service_env == "dev"


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        (
            "stg",
            [
                "POSTGRES_URL",
                "REDIS_URL",
                "TWELVEDATA_API_KEY",
                "STORAGE_BACKEND",
                "ARCHIVE_PATH",
                "SLACK_WEBHOOK_URL",
            ],
        ),
        ("prod", ["PAGERDUTY_INTEGRATION_KEY"]),
    ],
)
def test_missing_env_names_every_variable(env: str, missing: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        read_env({"SERVICE_ENV": env})
    for var in missing:
        assert var in exc.value.message
    assert exc.value.code == "CONFIG_ENV_INVALID"


def test_full_prod_env_accepted() -> None:
    env = read_env(
        {
            "SERVICE_ENV": "prod",
            "POSTGRES_URL": "postgresql://127.0.0.1/test",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "TWELVEDATA_API_KEY": "k",
            "STORAGE_BACKEND": "local",
            "ARCHIVE_PATH": "/srv/archive",
            "SLACK_WEBHOOK_URL": "https://hooks.invalid/x",
            "PAGERDUTY_INTEGRATION_KEY": "0123456789abcdef0123456789ABCDEF",
            "TZ": "UTC",
        }
    )
    assert env.service_env == "prod"
    assert env.archive_path == "/srv/archive"


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"SERVICE_ENV": "qa"}, "SERVICE_ENV='qa'"),
        ({"TZ": "Asia/Tokyo"}, "TZ must be UTC"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"STORAGE_BACKEND": "nfs"}, "STORAGE_BACKEND must be"),
        ({"POSTGRES_URL": "mysql://x"}, "POSTGRES_URL must be a postgresql:// URL"),
        ({"REDIS_URL": "redis://:secret@host:6x79/0"}, "REDIS_URL is not a usable URL: its port"),
        ({"REDIS_URL": "redis://host:99999/0"}, "REDIS_URL is not a usable URL: its port"),
        ({"REDIS_URL": "redis://default:secr/etPW@host:6379/0"}, "REDIS_URL is not a usable"),
        ({"POSTGRES_URL": "postgresql://app:secret?x@db:5432/c"}, "POSTGRES_URL is not a usable"),
        ({"REDIS_URL": "redis://host:0/0"}, "REDIS_URL port 0 is outside 1-65535"),
        ({"REDIS_URL": "http://host/0"}, "REDIS_URL must be a redis:// URL, got scheme 'http'"),
    ],
)
def test_bad_env_values(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as info:
        read_env(environ)
    assert "secr" not in str(info.value)  # a URL's password is never echoed, not even in part


def test_env_archive_path_overrides_storage_yaml(archive: Path) -> None:
    cfg = load_config(CONFIG_ROOT, "dev")
    assert cfg.paths.archive == archive
    assert cfg.paths.raw == archive / "raw"


@pytest.mark.parametrize(
    ("file", "old", "new", "fragment"),
    [
        ("cost_table.yaml", '{start: "00:00", end: "06:00"', '{start: "00:00", end: "22:00"',
         "slippage windows overlap at 21:00"),
        ("cost_table.yaml", '{start: "00:00", end: "06:00"', '{start: "07:00", end: "06:00"',
         "window start 07:00 must be before its end 06:00"),
        ("cost_table.yaml", "GBP/USD: {spread_bps: 1.2}", "GBP/USD: {spread_bps: -1}",
         "overrides.GBP/USD.spread_bps"),
        ("cost_table.yaml", "GBP/USD: {spread_bps: 1.2}", "GBP/USD: {spread_pips: 1.2}",
         "spread_pips"),
        ("dd_policy.yaml", "{warn: 0.04, halt: 0.06, flatten: 0.08}",
         "{warn: 0.04, halt: 0.09, flatten: 0.08}", "warn 0.04 < halt 0.09 < flatten 0.08"),
        ("universe.yaml", "    XAG/USD: {tick_size: 0.001, lot_step: 1.0, min_lot: 1.0, "
         "min_notional_usd: 100.0, margin_rate: 0.10}\n", "",
         "pair 'XAU_XAG': leg 'XAG/USD' has no trading rules"),
        ("universe.yaml", "margin_rate: 0.05}", "margin_rate: 1.5}", "margin_rate"),
    ],
)  # fmt: skip
def test_trading_costs_and_drawdown_policies_refuse_bad_values(
    root: Path, file: str, old: str, new: str, fragment: str
) -> None:
    _edit(root / "base" / file, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(root, "dev")
    assert fragment in str(err.value)
    assert file in str(err.value)


def test_cost_overrides_must_name_instruments(root: Path) -> None:
    _edit(root / "base" / "cost_table.yaml", "GBP/USD: {spread_bps", "GBP/JPY: {spread_bps")
    with pytest.raises(ConfigError, match=r"'overrides': \['GBP/JPY'\] are not instruments"):
        load_config(root, "dev")


def test_cost_rates_apply_overrides_key_by_key() -> None:
    costs = load_config(CONFIG_ROOT, "dev").costs
    gbp = costs.rates("GBP/USD")
    assert gbp.spread_bps == 1.2 and gbp.commission_bps == costs.defaults.commission_bps
    assert costs.rates("EUR/USD") == costs.defaults


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('value: "0 3 1 * *"', 'value: "0 3 32 * *"', "not a valid cron"),
        ("value: UTC", "value: Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ("retrain_retry_max:\n  value: 2", "retrain_retry_max:\n  value: 3",
         "retrain_retry_max': Input should be less than or equal to 2"),
        ("{kind: threads, max_workers: 2, dask_address: null}",
         "{kind: threads, max_workers: 2, dask_address: 'tcp://10.0.0.5:8786'}",
         "dask_address is only used with kind 'dask'"),
    ],
)  # fmt: skip
def test_retrain_policy_refuses_bad_values(root: Path, old: str, new: str, fragment: str) -> None:
    path = root / "base" / "retrain_policy.yaml"
    _edit(path, old, new)
    with pytest.raises(ConfigError, match=r"retrain_policy\.yaml") as info:
        load_policy(root, "retrain_policy", "dev", POLICY_SCHEMAS["retrain_policy"])
    assert fragment in info.value.message


def test_s3_artifact_store_needs_its_location(root: Path) -> None:
    _edit(root / "base" / "ml_core_storage.yaml", "{backend: local, s3: null}",
          "{backend: s3, s3: null}")  # fmt: skip
    with pytest.raises(ConfigError, match="backend 's3' needs the 's3' location"):
        load_config(root, "dev")


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("universe.yaml", "timezone: America/New_York", "timezone: Mars/Olympus"),
        ("cost_table.yaml", "    timezone: UTC", "    timezone: Europe/Atlantis"),
    ],
)  # fmt: skip
def test_every_timezone_of_the_policies_is_checked_at_load(
    root: Path, name: str, old: str, new: str
) -> None:
    """Review finding: only retrain_policy's timezone was checked; a calendar's or the
    slippage windows' failed later, inside a command (an internal error)."""
    _edit(root / "base" / name, old, new)
    bad = new.split(": ")[1]
    with pytest.raises(ConfigError, match=rf"unknown timezone '{bad}'"):
        load_config(root, "dev")


@pytest.mark.parametrize(
    ("file", "old", "new", "keys"),
    [
        ("ml_core_storage.yaml", "raw_root: {value: raw", "raw_root: {value: canonical",
         ("raw_root", "canonical_root")),
        ("ml_core_storage.yaml", "catalog_root: {value: catalog",
         "catalog_root: {value: canonical/catalog", ("canonical_root", "catalog_root")),
        ("ml_core_storage.yaml", "reports_root: {value: reports", "reports_root: {value: .",
         ("reports_root",)),
        ("ml_core_storage.yaml", "models_root: {value: models", "models_root: {value: registry",
         ("models_root", "registry")),
        ("serving_policy.yaml", "serving_root:\n  value: serving", "serving_root:\n  value: raw",
         ("raw_root", "serving_root")),
    ],
)  # fmt: skip
def test_storage_roots_must_not_overlap(
    root: Path, archive: Path, file: str, old: str, new: str, keys: tuple[str, ...]
) -> None:
    """Review: raw_root == canonical_root passed ``config check``; each ingest then overwrote
    the other layer (exit 0)."""
    _edit(root / "base" / file, old, new)
    with pytest.raises(ConfigError) as exc:
        load_config(root, "dev")
    assert exc.value.code == "CONFIG_STORAGE_OVERLAP", exc.value
    for key in keys:
        assert key in exc.value.message, exc.value.message


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [("reports_root", "/proc/mlcore-rep", "No such file or directory"),
     ("catalog_root", "/etc/hostname", "it is a file, not a folder"),
     ("raw_root", "/etc/hostname/raw", "Not a directory")],
)  # fmt: skip
def test_every_storage_root_outside_the_archive_is_checked(
    root: Path, archive: Path, key: str, value: str, reason: str
) -> None:
    """Review: ``reports_root: /proc/rep`` ended ingest in exit 70 after writing partitions;
    ``catalog_root: /etc/hostname`` ended catalog build in exit 70 (FileExistsError)."""
    from mlcore.config import check_archive

    path = root / "base" / "ml_core_storage.yaml"
    text = path.read_text()
    new = f"{key}: {{value: {value},"
    path.write_text(re.sub(rf"^{key}: {{value: [^,]*,", new, text, flags=re.M))
    cfg = load_config(root, "dev")
    with pytest.raises(ConfigError) as exc:
        check_archive(cfg.paths)
    assert exc.value.code == "DATA_ARCHIVE_UNUSABLE"
    assert key in exc.value.message and value in exc.value.message, exc.value.message
    assert exc.value.message.endswith(reason), exc.value.message


def test_a_storage_root_inside_the_archive_that_is_a_file_is_refused(
    root: Path, archive: Path
) -> None:
    from mlcore.config import check_archive

    archive.mkdir(parents=True, exist_ok=True)
    (archive / "catalog").write_text("not a folder")
    with pytest.raises(ConfigError) as exc:
        check_archive(load_config(root, "dev").paths)
    assert "catalog_root" in exc.value.message and "it is a file" in exc.value.message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://", "POSTGRES_URL needs a host"),
        ("postgresql://127.0.0.1:5432", "POSTGRES_URL needs a database name"),
        ("postgresql://127.0.0.1:5432/", "POSTGRES_URL needs a database name"),
        ("postgresql:///mlcore", "POSTGRES_URL needs a host"),
        ("redis://127.0.0.1:6379/abc", "REDIS_URL database must be a whole number"),
        ("redis://127.0.0.1:6379/-1", "REDIS_URL database must be a whole number"),
        ("redis://127.0.0.1:6379/0/1", "REDIS_URL database must be a whole number"),
        ("redis://127.0.0.1:6379/?db=x", "REDIS_URL database must be a whole number"),
        ("unix:///tmp/redis.sock?db=abc", "REDIS_URL database must be a whole number"),
        ("unix://", "REDIS_URL needs the socket path"),
    ],
)
def test_service_urls_must_name_their_host_and_database(url: str, fragment: str) -> None:
    """Review: POSTGRES_URL=postgresql:// wrote into libpq's default database; REDIS_URL with
    db 'abc' silently became db 0."""
    var = "POSTGRES_URL" if url.startswith("postgres") else "REDIS_URL"
    with pytest.raises(ConfigError, match=fragment):
        read_env({var: url})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/mlcore",
        "postgresql:///mlcore?host=/var/run/postgresql",
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "rediss://u:p@host:6380/15",
        "unix:///tmp/redis.sock?db=2",
    ],
)
def test_good_service_urls_pass(url: str) -> None:
    var = "POSTGRES_URL" if url.startswith("postgres") else "REDIS_URL"
    read_env({var: url})


def test_two_commands_of_one_process_check_the_archive_at_once(tmp_path: Path) -> None:
    """Review finding (a flaky rollback race test): the writability probe was named by the
    pid, so two threads probing at once removed each other's file and one was refused."""
    import threading

    from mlcore.config._app import _probe

    failures: list[str] = []
    start = threading.Barrier(8)

    def probe() -> None:
        start.wait()
        for _ in range(200):
            why = _probe(tmp_path / "archive")
            if why is not None:
                failures.append(why)

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert list((tmp_path / "archive").iterdir()) == []
