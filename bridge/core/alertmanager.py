"""The Alertmanager webhook payload (version 4), parsed leniently.

Unknown fields are ignored (newer Alertmanagers add some), any ``version`` is accepted,
timestamps keep their nanoseconds, and Go's zero time in ``endsAt`` means "no end".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bridge.core.jsontext import without_nul
from bridge.core.timeutil import MAX_NS, MIN_NS, parse_rfc3339

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted name/value pairs)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def parse_timestamp(value: Any) -> int | None:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string")
    return parse_rfc3339(value, clamp=True)


Timestamp = Annotated[int | None, BeforeValidator(parse_timestamp)]
Status = Literal["firing", "resolved"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(_Lenient):
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Annotated[int, BeforeValidator(parse_timestamp)] = Field(alias="startsAt")
    ends_at: Timestamp = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @property
    def time_clamped(self) -> bool:
        """A timestamp was outside what can be kept (years 1678 to 2261) and was clamped."""
        return self.starts_at in (MIN_NS, MAX_NS) or self.ends_at in (MIN_NS, MAX_NS)

    def model_post_init(self, __context: Any) -> None:
        if not self.fingerprint:
            # Some senders omit it; compute it exactly as Alertmanager does.
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))


class WebhookPayload(_Lenient):
    # Never reject a payload for its version (only "4" exists today): any JSON value is kept
    # as it came, with no validator to call for every webhook; ``version`` gives it as text.
    version_raw: Any = Field(default="4", alias="version")
    group_key: str = Field(alias="groupKey")
    # Bounded by SQLite's integers; Alertmanager never truncates more than it holds.
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0, le=2**63 - 1)
    status: Status
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]

    @property
    def version(self) -> str:
        v = self.version_raw
        return v if isinstance(v, str) else str(v)


class PayloadError(ValueError):
    """A webhook body we cannot accept; ``field`` names where, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_webhook(body: bytes) -> WebhookPayload:
    """Validate a webhook body, raising PayloadError with the first failing field path. A NUL
    in a string is kept as U+FFFD (``jsontext.without_nul``)."""
    body = without_nul(body)
    if not body.isascii():  # ASCII is UTF-8; only other bodies need the full check
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            raise PayloadError("", f"malformed JSON: {first['msg']}") from None
        msg = first["msg"]
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more error(s))"
        raise PayloadError(_loc(tuple(first["loc"])), msg) from None
