"""structlog setup: context vars first, one JSON object per line off a TTY (console on one),
and an optional PII-redaction processor."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PII = (
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[card]"),
    (re.compile(r"\+?\d[\d ().-]{7,}\d"), "[phone]"),
)


def redact_pii(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask e-mail addresses, card and phone numbers in string values."""
    for k, v in event.items():
        if isinstance(v, str) and k not in ("timestamp", "request_id"):
            for rx, mask in _PII:
                v = rx.sub(mask, v)
            event[k] = v
    return event


def configure(level: str = "info", fmt: str = "auto", redact: bool = False) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redact:
        processors.append(redact_pii)
    if not use_console:
        processors.append(structlog.processors.format_exc_info)
    processors.append(
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
