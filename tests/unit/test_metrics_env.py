"""``PROMETHEUS_MULTIPROC_DIR`` as an operator (or a leaked environment) may leave it: the
workers build their collectors at import, so a missing folder had ended ``import
mlcore.serving`` in a traceback from inside prometheus_client (a CI run saw it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MLCORE = Path(sys.executable).parent / "mlcore"


def _run(args: list[str], env_value: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": env_value}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_missing_folder_is_made_and_the_workers_record_into_it(tmp_path: Path) -> None:
    folder = tmp_path / "gone" / "metrics"
    code = "import mlcore.serving as s; s._metrics.SIGNALS_TOTAL.labels('hold').inc()"
    out = _run([sys.executable, "-c", code], str(folder), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert any(p.name.startswith("counter_") for p in folder.iterdir())


def test_an_empty_value_is_unset_and_writes_nothing_in_the_working_folder(tmp_path: Path) -> None:
    code = "import mlcore.serving as s; s._metrics.SIGNALS_TOTAL.labels('hold').inc()"
    out = _run([sys.executable, "-c", code], "  ", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = _run([str(MLCORE), "kpis", "show"], str(blocker / "metrics"), tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error ")]
    assert lines == [
        f"error CONFIG_ENV_INVALID: PROMETHEUS_MULTIPROC_DIR={str(blocker / 'metrics')!r}: the "
        "metrics folder cannot be made (Not a directory); point it at a writable folder or "
        "unset it"
    ]
    assert "Traceback" not in out.stderr
