"""The command tree, the options every command shares (declared here once), and how a
command ends: one line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

# Typer 0.29 ships its own copy of click (pinned in requirements/lock.txt): its usage errors
# are the ones a command line raises, so they are caught from that copy.
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from mlcore._progress import reporting
from mlcore.cli._params import ENVIRONMENTS, parse_environment
from mlcore.cli._render import error_line, progress_sink
from mlcore.errors import (
    BadDataError,
    ConfigError,
    DataQualityError,
    MlcoreError,
    RefusedError,
    RetryableError,
)

if TYPE_CHECKING:
    from mlcore.config import AppConfig

R = TypeVar("R")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PANEL = "Shared options (also accepted before the command name)"

EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--config-env", envvar="SERVICE_ENV", parser=parse_environment, metavar="ENV",
        help=f"{' | '.join(ENVIRONMENTS)} (default dev).", rich_help_panel=_PANEL,
    ),
]  # fmt: skip
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--config-root", help="Folder holding base/ and envs/ (default: ./configs).",
        exists=True, file_okay=False, rich_help_panel=_PANEL,
    ),
]  # fmt: skip
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace", envvar="MLCORE_WORKSPACE", file_okay=False, rich_help_panel=_PANEL,
        help="Workspace folder (made by `mlcore init`; default: the nearest one from the "
        "working folder up, else the shipped configs).",
    ),
]  # fmt: skip
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", rich_help_panel=_PANEL,
        help="Info logs, and the console chatter of Prefect, Alembic, numba and Optuna.",
    ),
]  # fmt: skip
_SHARED = {
    "config_env": EnvOpt, "config_root": RootOpt, "workspace": WorkspaceOpt, "verbose": VerboseOpt,
}  # fmt: skip
_DEFAULTS: dict[str, Any] = {
    "config_env": None, "config_root": None, "workspace": None, "verbose": False,
}  # fmt: skip
_ROOT_KEY = "mlcore.shared"


@dataclass(frozen=True)
class Shared:
    """The shared options in force for the running command."""

    config_env: str | None = None
    config_root: Path | None = None
    workspace: Path | None = None
    verbose: bool = False


_SHARED_NOW: ContextVar[Shared | None] = ContextVar("mlcore_cli_shared", default=None)


def shared() -> Shared:
    """The shared options of the command now running (the defaults outside a command)."""
    return _SHARED_NOW.get() or Shared()


def chosen_root() -> Path | None:
    """The config root the shared options name: ``--config-root``, else ``--workspace``'s
    configs/ (``MLCORE_WORKSPACE``), else None (found from the working folder)."""
    from mlcore.config import read_workspace

    opts = shared()
    if opts.config_root is not None:
        return opts.config_root
    if opts.workspace is not None:
        return read_workspace(opts.workspace).configs
    return None


def load_config() -> AppConfig:
    """The configuration the shared options name (base + workspace overlay + environment
    overlay), its archive folder checked usable (every command reads or writes it)."""
    from mlcore.config import check_archive
    from mlcore.config import load_config as load

    cfg = load(chosen_root(), shared().config_env)
    check_archive(cfg.paths)
    return cfg


def _typed(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _merge(ctx: typer.Context, given: dict[str, Any]) -> Shared:
    """A value typed after the command wins over one typed before it, which wins over the
    environment (SERVICE_ENV) and the defaults."""
    root: dict[str, tuple[Any, bool]] = ctx.meta.get(_ROOT_KEY, {})
    merged: dict[str, Any] = {}
    for name, value in given.items():
        root_value, root_typed = root.get(name, (_DEFAULTS[name], False))
        if _typed(ctx, name) or not root_typed:
            merged[name] = value if value not in (None, False) else root_value
        else:
            merged[name] = root_value
    return Shared(**merged)


def remember_root(ctx: typer.Context, **given: Any) -> None:
    """Keep the shared options given before the command name for the command."""
    ctx.meta[_ROOT_KEY] = {name: (value, _typed(ctx, name)) for name, value in given.items()}


def exit_code(exc: MlcoreError) -> int:
    """The exit code of an error: 2 config or usage, 75 retry later, 65 data refused, 69 an
    external service refused our credentials, else 1."""
    if isinstance(exc, ConfigError):
        return 2
    if isinstance(exc, RefusedError):
        return 69
    if isinstance(exc, BadDataError):
        return 65
    if isinstance(exc, RetryableError):
        return 75
    if isinstance(exc, DataQualityError):
        return 65
    return 1


@contextmanager
def coded(
    kind: type[MlcoreError],
    code: str,
    *,
    catch: tuple[type[Exception], ...] = (ValueError,),
    prefix: str = "",
) -> Iterator[None]:
    """A stage's plain ``catch`` error becomes ``kind(code, ...)``, one clear line; a coded
    error passes through with its own code."""
    try:
        yield
    except MlcoreError:
        raise
    except catch as exc:
        raise kind(code, f"{prefix}{exc}") from exc


@contextmanager
def _guarded() -> Iterator[None]:
    """Turn every error into one clear line on stderr and an exit code; never a traceback."""
    from mlcore._logging import get_logger  # structlog: not loaded for --help

    try:
        yield
    except MlcoreError as exc:
        log = get_logger("cli")
        # A mistyped argument is the user's to fix on the spot: logged only with --verbose.
        (log.info if exc.code.startswith("CLI_") else log.error)("command_failed", **exc.payload())
        error_line(f"error {exc.code}", exc.message)
        raise typer.Exit(exit_code(exc)) from None
    except (typer.Exit, typer.Abort, click_exc.ClickException):
        raise
    except Exception as exc:
        get_logger("cli").exception("internal_error", error=repr(exc))
        error_line("internal error", f"{type(exc).__name__}: {exc}")
        raise typer.Exit(70) from None


def _setup_logging(verbose: bool) -> None:
    from mlcore._logging import configure_logging, set_third_party_verbosity

    level = os.environ.get("LOG_LEVEL", "INFO" if verbose else "WARNING").upper()
    configure_logging(level if level in _LOG_LEVELS else "WARNING")
    set_third_party_verbosity(verbose)


def command(group: typer.Typer, name: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Register ``fn`` as command ``name`` of ``group``, with the shared options added to
    its signature and its errors turned into one line and an exit code."""

    def register(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def run(ctx: typer.Context, *args: Any, **kwargs: Any) -> R:
            opts = _merge(ctx, {k: kwargs.pop(k) for k in _SHARED})
            token = _SHARED_NOW.set(opts)
            try:
                _setup_logging(opts.verbose)
                with _guarded(), reporting(progress_sink()):
                    return fn(*args, **kwargs)
            finally:
                _SHARED_NOW.reset(token)

        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        extra = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=_DEFAULTS[k], annotation=t)
            for k, t in _SHARED.items()
        ]
        kinds = inspect.Parameter.KEYWORD_ONLY
        own = [p.replace(kind=kinds) for p in own]
        run.__signature__ = inspect.Signature([ctx_param, *own, *extra])  # type: ignore[attr-defined]
        run.__annotations__ = {**fn.__annotations__, "ctx": typer.Context, **_SHARED}
        group.command(name)(run)
        return fn

    return register


class RootGroup(TyperGroup):
    """The ``mlcore`` group: a usage error is one line on stderr and exit code 2."""

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click_exc.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click_exc.UsageError as exc:
            error_line(*usage_line(exc))
            code = exc.exit_code
        except click_exc.ClickException as exc:
            error_line("error", exc.format_message())
            code = exc.exit_code
        except typer.Abort:
            error_line("aborted", "")
            code = 1
        except Exception as exc:  # a bug in an option's parser, before any command's guard
            error_line("internal error", f"{type(exc).__name__}: {exc}")
            code = 70
        if not standalone_mode:
            return code
        sys.exit(code)


def usage_line(exc: click_exc.UsageError) -> tuple[str, str]:
    """One line for a usage error: the option, the value and what is accepted."""
    hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    param = getattr(exc, "param", None)
    if (
        isinstance(exc, click_exc.BadParameter)
        and not isinstance(exc, click_exc.MissingParameter)
        and param is not None
    ):
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        name = opts[0] if opts else str(param.name).upper()
        message = exc.message.removeprefix("Value error, ").replace("\n", " ")
        errors = getattr(exc.__cause__, "errors", None)  # typer's pydantic coercion
        if message.startswith("Input ") and callable(errors) and errors():
            message = f"{errors()[0].get('input')!r} {message.removeprefix('Input ')}"
        return "error CLI_ARGUMENT_INVALID", f"{name} {message}"
    # click lays a choice list out over lines and tabs: one line, single spaces.
    return "error CLI_USAGE_INVALID", " ".join(exc.format_message().split()) + hint


def typer_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """A command group with the project's settings."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **kwargs)  # fmt: skip


app = typer.Typer(
    name="mlcore",
    cls=RootGroup,
    help="ml-assets-core: market bars to trusted ML trading signals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config_env: EnvOpt = None,
    config_root: RootOpt = None,
    workspace: WorkspaceOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """ml-assets-core: market bars to trusted ML trading signals."""
    remember_root(
        ctx, config_env=config_env, config_root=config_root, workspace=workspace, verbose=verbose
    )
