"""Property-based fuzzing of the served OpenAPI schema (schemathesis): no 5xx, schema-valid 2xx bodies.

Error bodies are checked for status only: BentoML documents its 400 ``detail`` as a string while it
returns pydantic's list of errors, a mismatch of the framework's own schema.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.api


@pytest.fixture(scope="session")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def success_conforms(ctx, response, case):
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if response.status_code < 300 and content_type.startswith("application/json"):
        return response_schema_conformance(ctx, response, case)
    return None


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_server_error_and_valid_responses(case, server):
    case.call_and_validate(
        headers={"x-api-key": server.keys["admin"]}, checks=[not_a_server_error, success_conforms], timeout=120
    )
