"""openapi.yaml at the repository root is the app's OpenAPI document: a route, a schema or an
access rule changed in the code without `mlcore api openapi > openapi.yaml` fails here."""

from __future__ import annotations

import yaml

from mlcore.api import openapi_yaml
from tests.conftest import REPO


def test_openapi_yaml_matches_the_code() -> None:
    committed = (REPO / "openapi.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(committed) == yaml.safe_load(openapi_yaml()), (
        "openapi.yaml differs from the code: run `mlcore api openapi > openapi.yaml`"
    )
    assert committed == openapi_yaml(), "openapi.yaml is not as `mlcore api openapi` writes it"


def test_every_operation_declares_its_access_and_error_body() -> None:
    doc = yaml.safe_load(openapi_yaml())
    for path, ops in doc["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in ops.items():
            assert op["x-access"]["role"] in ("none", "viewer", "editor", "approver", "admin")
            refusals = {s for s in op["responses"] if s.startswith("4")}
            assert refusals, f"{method} {path} documents no refusal"
            for status in refusals:
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorOut"), f"{method} {path} {status}: {ref}"
