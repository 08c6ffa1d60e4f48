"""The ``mlcore`` command line.

One module per command group (``_data``: config, ingest, catalog, features; ``_models``:
train, theta, backtest, report; ``_registry``; ``_audit``; ``_flows``; ``_run``: demo, serve), the
options every command shares declared once in ``_app`` (``--config-env``/``SERVICE_ENV``,
``--config-root``, ``--verbose``; accepted before or after the command name), parsers of
constrained values in ``_params`` and everything printed in ``_render``.

Exit codes: 0 ok, 1 failed, 2 bad usage or config, 65 data refused (data-quality),
70 internal error, 75 temporary failure (retry later).

The command modules import the pipeline's stages inside the command functions, not at the
top: ``mlcore --help`` then loads none of pandas, scikit-learn, LightGBM, Prefect or
SQLAlchemy and answers at once. This is the one accepted exception to the rule of no imports
inside functions (it is not used to dodge an import cycle); a unit test guards it.
"""

from __future__ import annotations

import sys

from mlcore.cli import (
    _api,
    _audit,
    _configs,
    _data,
    _feedback,
    _fills,
    _flows,
    _metrics,
    _models,
    _notify,
    _registry,
    _retention,
    _run,
    _workspace,
)
from mlcore.cli._app import app

app.add_typer(_data.config_app, name="config")
app.add_typer(_data.catalog_app, name="catalog")
app.add_typer(_data.features_app, name="features")
app.add_typer(_registry.registry_app, name="registry")
app.add_typer(_audit.audit_app, name="audit")
app.add_typer(_models.theta_app, name="theta")
app.add_typer(_flows.flows_app, name="flows")
app.add_typer(_workspace.universe_app, name="universe")
app.add_typer(_configs.configs_app, name="configs")
app.add_typer(_api.api_app, name="api")
app.add_typer(_retention.retention_app, name="retention")
app.add_typer(_feedback.feedback_app, name="feedback")
app.add_typer(_notify.notify_app, name="notify")
app.add_typer(_fills.fills_app, name="fills")
app.add_typer(_fills.kpis_app, name="kpis")
app.add_typer(_metrics.metrics_app, name="metrics")
_ = _run  # registers demo and serve on the root group (_workspace: init)

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``mlcore`` console script."""
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)
