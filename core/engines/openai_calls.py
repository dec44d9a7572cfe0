"""Calls to the OpenAI images API: retries, and every final error turned into words for the user.

``ApiCalls.call`` runs one SDK call:

- **Retries.** 429 (except ``insufficient_quota``), 5xx, connection errors and timeouts are retried
  up to ``max_retries`` times with exponential backoff and full jitter; a ``Retry-After`` /
  ``retry-after-ms`` header, when present, sets the wait instead (up to ``max_retry_after``
  seconds; a longer one is not waited for). The SDK's own retries are switched off.
- **Final errors** become a ``ProviderFailed`` (a ``RefusedByProvider``, so the worker shows its
  text to the requester and does not run the job again) whose message says what happened and
  who can fix it: a content-policy refusal (HTTP 400 ``moderation_blocked`` /
  ``content_policy_violation``) with the service's reason; another 4xx with its reason; the
  API key refused; the account out of credit; the service still failing, rate-limiting or
  silent after the retries. The SDK's error stays the ``__cause__`` (for the log), with the API
  key scrubbed from its text and body.

``openai`` is imported lazily (it is the ``openai`` extra), so importing ``core`` never needs it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from core.errors import ProviderFailed

if TYPE_CHECKING:
    import openai

__all__ = ["REDACTED", "REFUSAL_CODES", "ApiCalls", "retry_after"]

log = logging.getLogger("core.engines.openai")  # the engine's own logger: one name to follow

P = ParamSpec("P")
T = TypeVar("T")

REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
REDACTED = "[redacted]"


def retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if any."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class ApiCalls:
    """Retries and error words around the SDK's calls, for one API key (``secret``, scrubbed
    from every error's text)."""

    def __init__(
        self,
        secret: str,
        *,
        max_retries: int,
        timeout: float,
        backoff_base: float,
        backoff_max: float,
        max_retry_after: float,
    ) -> None:
        self._secret = secret
        self._max_retries = max_retries
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after

    async def call(
        self, what: str, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``call(*args, **kwargs)`` with retries; ``what`` names the request in messages
        (``"prompt"``, ``"edit"``)."""
        import openai

        attempt = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIConnectionError,  # timeouts included (APITimeoutError)
            ) as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise self._final(exc, what, attempt + 1) from self.scrub(exc)
                attempt += 1
                log.warning(
                    "OpenAI images API: %s; retry %d of %d in %.2f s",
                    self._describe(exc),
                    attempt,
                    self._max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
            except openai.OpenAIError as exc:
                raise self._final(exc, what, attempt + 1) from self.scrub(exc)

    # -- the words -------------------------------------------------------------------------

    def _final(self, exc: openai.OpenAIError, what: str, tries: int) -> ProviderFailed:
        """What the requester is told about ``exc``, the last error after ``tries`` tries."""
        import openai

        times = f"{tries} tr{'y' if tries == 1 else 'ies'}"
        if isinstance(exc, openai.BadRequestError) and exc.code in REFUSAL_CODES:
            if what == "edit":
                return ProviderFailed(
                    f"The image service refused this edit: {self._reason(exc)}. Rephrase the "
                    "prompt, or use another image, and try again."
                )
            return ProviderFailed(
                f"The image service refused this prompt: {self._reason(exc)}. "
                "Rephrase it and try again."
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderFailed(
                f"The image service refused onbrand's access ({self._describe(exc)}: "
                f"{self._reason(exc)}); an operator has to fix the OpenAI key or account."
            )
        if isinstance(exc, openai.RateLimitError):
            if exc.code == "insufficient_quota":
                return ProviderFailed(
                    "The image service account is out of credit; an operator has to add "
                    "credit or raise the limit, then try again."
                )
            return ProviderFailed(
                f"The image service is limiting how fast onbrand may ask ({times}); "
                "try again in a minute."
            )
        if isinstance(exc, openai.APITimeoutError):
            return ProviderFailed(
                f"The image service didn't answer within {self._timeout:g} s ({times}); "
                "try again in a few minutes."
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderFailed(
                f"onbrand couldn't reach the image service ({times}); try again in a few "
                "minutes, or ask an operator to check the network."
            )
        if isinstance(exc, openai.InternalServerError):
            return ProviderFailed(
                f"The image service failed ({self._describe(exc)}, {times}); try again in a "
                "few minutes."
            )
        if isinstance(exc, openai.APIStatusError):
            return ProviderFailed(
                f"The image service couldn't take this {what} ({self._describe(exc)}: "
                f"{self._reason(exc)}). Change the prompt or settings; if it keeps happening, "
                "ask an operator to check the preset's model."
            )
        return ProviderFailed(
            f"The image service answered something onbrand couldn't read ({type(exc).__name__});"
            " try again, and ask an operator if it keeps happening."
        )

    def _retry_delay(self, exc: openai.APIError, attempt: int) -> float | None:
        """Seconds to wait before the next try, or ``None`` when the error is final."""
        import openai

        if attempt >= self._max_retries:
            return None
        if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
            return None  # out of credit: waiting will not help
        if isinstance(exc, openai.APIStatusError):
            wait = retry_after(exc.response.headers)
            if wait is not None:
                return wait if wait <= self._max_retry_after else None
        # Full jitter: uniform in [0, min(max, base * 2**attempt)].
        ceiling = min(self._backoff_max, self._backoff_base * 2**attempt)
        return random.uniform(0, ceiling)

    @staticmethod
    def _describe(exc: openai.OpenAIError) -> str:
        status = getattr(exc, "status_code", None)
        return f"HTTP {status}" if status is not None else type(exc).__name__

    def _reason(self, exc: openai.OpenAIError) -> str:
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        text = message if isinstance(message, str) and message.strip() else "no reason given"
        return self._redact(text).strip().rstrip(".")

    # -- secrets ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if len(self._secret) >= 4 else text

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` with the API key taken out of its message and body (in place)."""
        exc.args = tuple(self._redact(a) if isinstance(a, str) else a for a in exc.args)
        message = getattr(exc, "message", None)
        if isinstance(message, str):
            exc.message = self._redact(message)  # type: ignore[attr-defined]
        body = getattr(exc, "body", None)
        if body is not None:
            exc.body = self._redact_value(body)  # type: ignore[attr-defined]
        return exc

    def _redact_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v) for v in value]
        return value
