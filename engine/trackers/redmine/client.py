"""A typed HTTP client for Redmine's REST API (JSON, API-key authentication), UI-free.

Its errors are nested classes that are also the engine's tracker errors, so a caller may catch
either: `Offline` is a `TrackerOffline`, `AuthFailed` a `TrackerAuthFailed`, `Refused` a
`TrackerRefused` carrying Redmine's own messages."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from engine.errors import TrackerAuthFailed, TrackerOffline, TrackerRefused

DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})


def retry_after(response: httpx.Response, default: float) -> float:
    """Seconds the server asked us to wait (`Retry-After`: seconds or a date), capped."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_BACKOFF)


class RedmineClient:
    """One Redmine server reached with one API key over a pooled connection."""

    class Error(Exception):
        """Anything that went wrong talking to Redmine."""

    class Offline(Error, TrackerOffline):
        """Redmine cannot be reached, or answered 5xx / 429 after the retries."""

    class AuthFailed(Error, TrackerAuthFailed):
        """Redmine refused the API key (401) or the user may not do this (403)."""

    class Refused(Error, TrackerRefused):
        """Redmine refused the request (400/422 with its messages, or another 4xx)."""

        def __init__(self, status: int, messages: list[str], text: str) -> None:
            super().__init__(text)
            self.status = status
            self.messages = messages

    class NotFound(Refused):
        """The thing asked for does not exist (404)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = max(0, retries)
        self.sleep = sleep
        self.request_count = 0
        self._http = httpx.Client(
            base_url=self.url,
            headers={"X-Redmine-API-Key": api_key, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            transport=transport,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RedmineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a JSON document."""
        return self._json(self.request("GET", path, params=params))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON document; the created object as Redmine answers it."""
        return self._json(self.request("POST", path, json=body))

    def put(self, path: str, body: dict[str, Any]) -> None:
        """PUT a JSON document (Redmine answers 204 without a body)."""
        self.request("PUT", path, json=body)

    def upload(self, filename: str, content: bytes) -> str:
        """Upload a file's content; the token that attaches it to an issue."""
        response = self.request(
            "POST",
            "/uploads.json",
            params={"filename": filename},
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )
        token = self._json(response).get("upload", {}).get("token")
        if not isinstance(token, str):
            raise RedmineClient.Refused(response.status_code, [], "Redmine returned no upload token")
        return token

    def download(self, url: str) -> bytes:
        """The bytes behind an attachment's `content_url`."""
        return self.request("GET", url).content

    def pages(
        self, path: str, key: str, params: dict[str, Any], page_size: int = 100
    ) -> list[dict[str, Any]]:
        """Every item of a paged listing (`offset`/`limit`, `total_count`)."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.get(path, {**params, "offset": offset, "limit": page_size})
            batch = page.get(key) or []
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_count", offset)):
                return items

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries (back-off with jitter, `Retry-After` honoured) and map the answer."""
        delay = FIRST_BACKOFF
        attempt = 0
        while True:
            attempt += 1
            self.request_count += 1
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # nothing reached the server: safe to send again whatever the method
                if attempt > self.retries:
                    raise RedmineClient.Offline(f"{self.url}: cannot connect ({exc})") from exc
            except httpx.TransportError as exc:
                if method not in IDEMPOTENT or attempt > self.retries:
                    raise RedmineClient.Offline(f"{self.url}: {type(exc).__name__} ({exc})") from exc
            else:
                status = response.status_code
                retryable = status in RETRY_STATUSES or (status >= 500 and method in IDEMPOTENT)
                if not retryable or attempt > self.retries:
                    return self._check(method, path, response)
                self.sleep(retry_after(response, delay) if status in RETRY_STATUSES else delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_BACKOFF)

    def _check(self, method: str, path: str, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        where = f"{method} {path.split('?')[0]}"
        if status >= 500 or status == 429:
            raise RedmineClient.Offline(f"Redmine answered {status} to {where}")
        if status in (401, 403):
            words = "refused the API key" if status == 401 else "forbids this to the sync user"
            raise RedmineClient.AuthFailed(f"Redmine {words} ({status} to {where})")
        messages = _messages(response)
        text = f"Redmine answered {status} to {where}" + (f": {'; '.join(messages)}" if messages else "")
        if status == 404:
            raise RedmineClient.NotFound(status, messages, text)
        raise RedmineClient.Refused(status, messages, text)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise RedmineClient.Offline(
                f"Redmine answered {response.status_code} with no JSON ({response.text[:80]!r})"
            ) from None
        return data if isinstance(data, dict) else {}


def _messages(response: httpx.Response) -> list[str]:
    """Redmine's error messages (`{"errors": [...]}`), or the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return [response.text.strip()[:200]] if response.text.strip() else []
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return [str(errors)] if errors else []
