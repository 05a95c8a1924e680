"""Atlassian's published Jira OpenAPI (Cloud v3) as a check of every request and answer the fake
Jira sees: openapi-core validates them against `../shared/contracts/jira-platform-v3.json`.

The file is loaded once per session with spec validation off (it has known flaws). Server/DC v2
requests are checked under the same path with /rest/api/2 read as /rest/api/3: the shapes agree
for every operation the connector uses except the rich-text bodies (description, comment body, a
multi-line text field), which v2 sends as wiki text and v3 as ADF; the spec leaves those bodies
untyped, so both pass here and `engine.trackers.jira.adf` checks ADF itself.

Where the file is absent (a clone without `../shared/`) the checks pass everything: the Jira tests
still run against the fake, unchecked, and only `test_the_published_contract_checks_the_fake`
skips, saying so."""

from __future__ import annotations

import functools
import json
import re
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

SPEC_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "contracts" / "jira-platform-v3.json"


_JIRA_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)")


def _date_time(value: Any) -> bool:
    """RFC 3339, or Jira's own form with the offset's colon left out (2026-12-01T12:00:00.000+0000),
    which real Jira sends although its description says date-time."""
    return not isinstance(value, str) or _JIRA_TIME.fullmatch(value) is not None


@functools.cache
def _openapi() -> Any:
    from openapi_core import Config, OpenAPI

    config = Config(spec_validator_cls=None, extra_format_validators={"date-time": _date_time})
    return OpenAPI.from_dict(json.loads(SPEC_PATH.read_text()), config=config)


def require_contract() -> None:
    """Skip the calling test when the published description is not there to check against."""
    if not SPEC_PATH.exists():
        pytest.skip(
            f"the Jira OpenAPI description is absent ({SPEC_PATH}): nothing to check the fake against"
        )


class _Request:
    """An httpx request as openapi-core reads one."""

    def __init__(self, request: httpx.Request, version: int) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        path = request.url.path
        if version == 2:
            path = "/rest/api/3" + path.removeprefix("/rest/api/2")
        self.host_url = f"{request.url.scheme}://{request.url.host}"
        self.path = path
        self.method = request.method.lower()
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("content-type", "application/octet-stream").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    """An httpx response as openapi-core reads one."""

    def __init__(self, response: httpx.Response) -> None:
        from werkzeug.datastructures import Headers

        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").split(";")[0].lower()
        self.headers = Headers(list(response.headers.items()))
        self.data: bytes | None = response.content or None


def _multipart(request: httpx.Request) -> bool:
    return str(request.headers.get("content-type", "")).startswith("multipart/")


def check_request(request: httpx.Request, version: int) -> None:
    """Raise when the request does not match the published operation."""
    if not SPEC_PATH.exists():
        return
    openapi = _openapi()
    wrapped = _Request(request, version)
    if _multipart(request):
        # The spec types the upload body as an array of Spring's MultipartFile (a server-side
        # class, not a wire format): only the operation, its path and its parameters are checked.
        from openapi_core.validation.request.validators import V30RequestParametersValidator

        validator = V30RequestParametersValidator(openapi.spec)
        validator.validate(wrapped)
        return
    with warnings.catch_warnings():
        # A bearer token (a Server/DC PAT) meets the file's OAuth2 scheme, which openapi-core
        # cannot check and warns about; the operations also allow anonymous calls, so it passes.
        warnings.filterwarnings("ignore", "Unsupported scheme type", UserWarning)
        openapi.validate_request(wrapped)


def check_response(request: httpx.Request, response: httpx.Response, version: int) -> None:
    """Raise when the answer does not match what the published operation returns."""
    if not SPEC_PATH.exists():
        return
    from openapi_core.validation.response.exceptions import MissingData

    try:
        _openapi().validate_response(_Request(request, version), _Response(response))
    except MissingData:
        # The file declares an (untyped) JSON body for answers Jira sends empty: 204 of an edit or
        # a transition, 201 of a link, 200 of a property set.
        if response.content or response.status_code not in (200, 201, 204):
            raise
