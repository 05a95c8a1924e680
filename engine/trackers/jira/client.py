"""A small typed HTTP client for the Jira REST API (Server/DC v2, Cloud v3), UI-free, on httpx.

Its own errors (`JiraClient.Error` and its nested kinds) are raised at this one boundary; the
tracker maps them to the engine's. 429 and 503 are retried after their Retry-After, connection
errors and other 5xx with exponential back-off and jitter, a bounded number of times."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from engine.trackers.settings import TrackerSettings

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4)
RETRIES = 3
BACKOFF_SECONDS = 0.5
RETRY_AFTER_CAP_SECONDS = 30.0
PAGE_SIZE = 100


class JiraClient:
    """Requests to one Jira site's REST API `/rest/api/<version>` with the account's credentials."""

    class Error(Exception):
        """A request Jira did not answer as asked; `status` is its HTTP status (0: no answer)."""

        def __init__(self, status: int, text: str) -> None:
            super().__init__(f"HTTP {status}: {text}" if status else text)
            self.status = status
            self.text = text

    class Offline(Error):
        """Jira could not be reached, or answered 5xx or 429 after every retry."""

    class AuthFailed(Error):
        """Jira refused the credentials or the account's rights (401/403)."""

    class Refused(Error):
        """Jira refused the request itself (400/409/422 and the like), with its reasons."""

    class NotFound(Error):
        """The resource does not exist (404), or the account may not see it."""

    def __init__(self, settings: TrackerSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.version = settings.api_version if settings.api_version in (2, 3) else 3
        auth: httpx.Auth | None = None
        headers = {"Accept": "application/json"}
        if settings.auth == "pat":
            headers["Authorization"] = f"Bearer {settings.secret}"
        else:  # basic (Server/DC password) and token (Cloud e-mail + API token) are both Basic
            auth = httpx.BasicAuth(settings.user, settings.secret)
        self.retries = int(settings.options.get("http_retries", RETRIES))
        self._http = httpx.Client(
            base_url=f"{settings.url}/rest/api/{self.version}",
            auth=auth,
            headers=headers,
            timeout=TIMEOUT,
            limits=LIMITS,
            transport=transport,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any, params: dict[str, Any] | None = None) -> Any:
        response = self.request("POST", path, json=body, params=params)
        return response.json() if response.content else None

    def put(self, path: str, body: Any, params: dict[str, Any] | None = None) -> Any:
        response = self.request("PUT", path, json=body, params=params)
        return response.json() if response.content else None

    def get_bytes(self, path: str) -> bytes:
        return self.request("GET", path, headers={"Accept": "*/*"}).content

    def upload(self, path: str, filename: str, content: bytes, media_type: str) -> Any:
        """POST one file as multipart `file` (Jira wants X-Atlassian-Token: no-check against XSRF)."""
        response = self.request(
            "POST",
            path,
            files={"file": (filename, content, media_type)},
            headers={"X-Atlassian-Token": "no-check"},
        )
        return response.json()

    def pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list paged with startAt (`key` names the list: values, comments, ...)."""
        start = 0
        while True:
            page = self.get(path, {**(params or {}), "startAt": start, "maxResults": PAGE_SIZE})
            if not isinstance(page, dict):
                return
            items = page.get(key) or []
            yield from items
            start += len(items)
            total, last = page.get("total"), page.get("isLast")
            if not items or last is True or (isinstance(total, int) and start >= total):
                return

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request, retried while Jira is busy or unreachable; raises a `JiraClient.Error`."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise JiraClient.Offline(0, f"Jira unreachable: {exc}") from exc
                self._pause(attempt, None)
                attempt += 1
                continue
            status = response.status_code
            if status < 400:
                return response
            if (status == 429 or status >= 500) and attempt < self.retries:
                self._pause(attempt, response.headers.get("Retry-After"))
                attempt += 1
                continue
            raise _error(response)

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = _retry_after_seconds(retry_after)
        if delay is None:
            delay = BACKOFF_SECONDS * (2**attempt) * (0.5 + random.random())
        time.sleep(min(delay, RETRY_AFTER_CAP_SECONDS))


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error(response: httpx.Response) -> JiraClient.Error:
    status = response.status_code
    text = reasons(response)
    if status in (401, 403):
        return JiraClient.AuthFailed(status, text or "credentials refused")
    if status == 404:
        return JiraClient.NotFound(status, text or "not found")
    if status == 429 or status >= 500:
        return JiraClient.Offline(status, text or "Jira is unavailable")
    return JiraClient.Refused(status, text or response.reason_phrase)


def reasons(response: httpx.Response) -> str:
    """Jira's errorMessages and errors (field: message) of an error answer, in one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if not isinstance(body, dict):
        return ""
    parts = [str(message) for message in body.get("errorMessages") or []]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts.extend(f"{name}: {message}" for name, message in errors.items())
    return "; ".join(parts)
