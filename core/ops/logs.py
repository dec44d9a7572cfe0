"""Logging for every onbrand process: JSON lines for machines, a readable line for people.

``setup_logging`` installs one handler on stderr: JSON lines when stderr is not a terminal
(containers, systemd, CI), a human line on a terminal (``ONBRAND_LOG_FORMAT`` forces either).
Every line carries the ``generation_id`` and ``correlation_id`` bound with ``bound(...)`` in the
current context (contextvars, so concurrent jobs and requests never mix them up).

Secrets never reach the output: the formatter masks, in the final text (message, arguments and
tracebacks alike), the value of every secret configured in ``Settings`` and anything shaped like
a Slack or bearer token.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

__all__ = [
    "JsonFormatter",
    "SecretMasker",
    "TextFormatter",
    "bound",
    "correlation_id",
    "generation_id",
    "setup_logging",
]

generation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "onbrand_generation_id", default=None
)
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "onbrand_correlation_id", default=None
)

MASK: Final = "********"
# Token shapes masked even when not configured here (a token pasted into a prompt, say).
_TOKEN_SHAPES: Final = re.compile(
    r"\bxox[abposre]-[A-Za-z0-9-]{8,}"  # Slack bot/user/app tokens
    r"|\bxapp-[A-Za-z0-9-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # OpenAI-style API keys
    r"|(?i:\b(?:bearer|bot)\s+)[A-Za-z0-9._~+/=-]{20,}"  # Authorization header values
)
_MIN_SECRET_LENGTH: Final = 6  # shorter values would mask ordinary words


@contextlib.contextmanager
def bound(*, generation: object | None = None, correlation: str | None = None) -> Iterator[None]:
    """Tag every log line in this context with a generation id and/or a correlation id."""
    tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]] = []
    if generation is not None:
        tokens.append((generation_id, generation_id.set(str(generation))))
    if correlation is not None:
        tokens.append((correlation_id, correlation_id.set(correlation)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class SecretMasker:
    """Replaces known secret values and token-shaped strings with ``********``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted(
            {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _TOKEN_SHAPES.sub(MASK, text)


def _context(record: logging.LogRecord) -> dict[str, str]:
    """The ids bound in the context, or passed as ``extra={"generation_id": ...}``."""
    found: dict[str, str] = {}
    for name, var in (("generation_id", generation_id), ("correlation_id", correlation_id)):
        value = getattr(record, name, None) or var.get()
        if value is not None:
            found[name] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception."""

    def __init__(self, mask: SecretMasker) -> None:
        super().__init__()
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.mask(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  core.worker: message [generation=… correlation=…]``."""

    def __init__(self, mask: SecretMasker) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _context(record)
        if ids:
            tags = " ".join(f"{k.removesuffix('_id')}={v}" for k, v in ids.items())
            first, newline, rest = text.partition("\n")
            text = f"{first} [{tags}]{newline}{rest}"
        return self.mask(text)


def setup_logging(
    *,
    verbose: bool = False,
    level: str | None = None,
    fmt: Literal["auto", "json", "text"] | None = None,
    secrets: Iterable[str] | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the process's one log handler on the root logger (replacing any other).

    Unset arguments come from ``Settings`` (``ONBRAND_LOG_LEVEL``, ``ONBRAND_LOG_FORMAT`` and the
    configured secrets); a malformed environment falls back to defaults here, because the command
    itself reports the configuration error."""
    settings = None
    with contextlib.suppress(ValueError):
        from core.settings import get_settings

        settings = get_settings()
    if secrets is None:
        secrets = settings.secret_values() if settings is not None else ()
    level = "DEBUG" if verbose else (level or (settings.log_level if settings else "WARNING"))
    fmt = fmt or (settings.log_format if settings else "auto")
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if _isatty(stream) else "json"
    mask = SecretMasker(secrets)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(mask) if fmt == "json" else TextFormatter(mask))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
