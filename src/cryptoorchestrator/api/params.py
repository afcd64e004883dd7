"""Query-parameter parsing shared by routers: times as ISO 8601 or epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptoorchestrator.core.errors import ValidationFailed


def parse_time_ms(value: str | int | datetime | None, *, name: str) -> int | None:
    """ISO 8601 (naive means UTC) or epoch milliseconds -> epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{name} must be ISO 8601 (2024-01-01T00:00:00Z) or epoch milliseconds.",
            details={"errors": [{"loc": ["query", name], "msg": "invalid time", "type": "value_error"}]},
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_ms(value: int) -> str:
    """Epoch milliseconds -> ISO 8601 UTC with Z."""
    text = datetime.fromtimestamp(value / 1000, UTC).isoformat().replace("+00:00", "Z")
    return text
