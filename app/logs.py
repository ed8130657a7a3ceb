"""Log output: plain text (default) or one JSON object per line (LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("message_id", "sandbox_id", "correlation_id", "seq", "message_type", "state")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the message context
    (message_id, sandbox_id, correlation_id, seq, …) when the record carries it, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for field in CONTEXT_FIELDS:
            if getattr(record, field, None) is not None:
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*")
REQUEST_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")  # they log request lines with query strings


class RedactTokens(logging.Filter):
    """Replaces the value of a `token` query parameter in a record's text by `[redacted]` (WebSocket handshakes
    may carry a token there, and request lines are logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT (`text` or `json`)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr at `level`, formatted per `log_format`."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def use_formatter(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of `logger` the formatter for `log_format` (for loggers others set up, e.g. Celery's)."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))
