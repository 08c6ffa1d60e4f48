"""Schemathesis (v4) against the live API (uvicorn on loopback, embedded default) from the
committed openapi.yaml: generated requests of every operation, as an admin with a fresh TOTP
code, never meet a 5xx and every answer conforms to the document (bounded examples: < 60 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import REPO
from tests.integration._api_support import Api, api_config, live_api

schema = schemathesis.openapi.from_path(REPO / "openapi.yaml")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("POSTGRES_URL", raising=False)
        mp.delenv("REDIS_URL", raising=False)
        cfg = api_config(tmp_path_factory.mktemp("schemathesis"), mp)
        with live_api(cfg) as live:
            yield live


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_as_documented(case: schemathesis.Case, api: Api) -> None:
    case.call_and_validate(base_url=api.url.removesuffix("/api/v1"), headers=api.headers("ada"))
