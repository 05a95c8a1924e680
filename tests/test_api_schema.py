"""Schemathesis runs the API's own OpenAPI document against it over HTTP: no 5xx, and every
response (status, content type, body, headers) as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from engine.runtime.demo import pair_installations

from .test_api import Served, serving

OPERATIONS = 9  # the document's operations: a new route must be counted (and covered) here


@pytest.fixture(scope="module")
def served_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One running pair for every operation (building a pair per operation would dominate the time)."""
    demo = pair_installations(Path(tmp_path_factory.mktemp("api-schema")) / "demo", encryption=False)
    try:
        with serving(demo.globex) as served:
            yield served
    finally:
        demo.close()


@pytest.fixture(scope="module")
def api_schema(served_module: Served) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(served_module.server.url + "openapi.json")
    assert len(list(schema.get_all_operations())) == OPERATIONS
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_answers_as_its_openapi_document_says(case: Case[Any], served_module: Served) -> None:
    case.call_and_validate(headers=served_module.auth)
