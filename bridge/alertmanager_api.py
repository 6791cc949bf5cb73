"""Alertmanager's HTTP API v2 at the edge: what Alertmanager holds now (its alerts, silences and
receivers) for the reconciliation of ``core.reconcile``, and the silences the bridge makes and
expires for its incidents (``bridge.silences``).

An HA cluster is one logical source: every peer should hold the same alerts (Prometheus sends
to all) and the same silences (gossip). ``fetch`` asks every peer and merges their answers
(``core.reconcile.merge_views``): an alert is gone only when no peer that answers lists it, and
at least one peer must be up for longer than the grace period (``core.reconcile.trusted``): a
peer that has just restarted lists nothing yet, and "nothing listed" means "resolved" to the
reconciler. Writes (silences) go to the first peer that answers.

The alerts list is read strictly for the same reason: an entry without a fingerprint, labels or a
start makes the whole answer unusable (a dropped entry would read as a resolve); a malformed
silence is skipped. Whatever a peer or the network does becomes an ``AmError`` with a short,
bounded ``reason`` (a metric label) and a one-line message that names the peer without its
credentials; aiohttp's and asyncio's exceptions never escape (cancellation aside). Imports the
core only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge.core.reconcile import (
    AlertStateName,
    AmAlert,
    AmSilence,
    AmView,
    merge_views,
    trusted,
)
from bridge.core.secrets import Secret, credential_forms, mask
from bridge.core.text import escape_controls
from bridge.core.timeutil import format_ns, parse_rfc3339

log = logging.getLogger("bridge.alertmanager_api")

# An answer larger than this is refused: a cluster with this many alerts has other problems,
# and the whole answer is held in memory to be parsed.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
MAX_MESSAGE = 300  # characters of an AmError's message
EXCERPT = 120  # characters of an error answer's text quoted in a message
# What Alertmanager answers to a silence it refuses (an invalid matcher, a schema violation):
# every peer would refuse it the same way, and so would a retry.
REFUSED = (400, 422)
REASONS = ("unreachable", "timeout", "http_error", "bad_answer", "too_large")
_STATES: tuple[AlertStateName, ...] = ("active", "suppressed", "unprocessed")


class AmError(Exception):
    """One peer's failure. ``reason`` is short and bounded (a metric label): one of
    "unreachable", "timeout", "http_error", "bad_answer", "too_large". ``peer`` is the base URL
    without credentials; ``status`` the HTTP status of an "http_error". ``str(err)`` is one line
    naming the peer, the path and what went wrong, never a secret, control characters escaped,
    at most ``MAX_MESSAGE`` characters."""

    def __init__(
        self, reason: str, peer: str, path: str, detail: str, *, status: int | None = None
    ) -> None:
        text = escape_controls(f"Alertmanager at {peer}: {path}: {detail}")
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1] + "…"
        super().__init__(text)
        self.reason = reason
        self.peer = peer
        self.path = path
        self.status = status

    def __repr__(self) -> str:
        return f"AmError({self.reason!r}, {str(self)!r})"


class _BadAnswer(ValueError):
    """An answer that is not what the API documents; the message names the place."""


@dataclass(frozen=True)
class Fetched:
    """One ``fetch``: a trusted peer's complete answer (or None), and what the others did."""

    view: AmView | None  # a trusted peer's complete answer, or None
    errors: tuple[AmError, ...]  # peers that failed, in the order tried
    young: tuple[str, ...]  # peers that answered but are up for less than the grace period


@dataclass(frozen=True)
class _Peer:
    base: str  # the URL requests are made to (credentials removed, no trailing slash)
    shown: str  # the URL messages show
    auth: str | None  # the Authorization header of the URL's user and password
    secrets: tuple[str, ...]  # what must never appear in a message


def _peer(url: str) -> _Peer:
    try:
        parsed = URL(url)
        bare = parsed.with_user(None).with_query(None).with_fragment(None)
        base = str(bare).rstrip("/")
    except (ValueError, TypeError):
        return _Peer(url.rstrip("/"), "the configured URL", None, (url,))
    auth = None
    if parsed.user is not None:
        auth = aiohttp.encode_basic_auth(parsed.user, parsed.password or "")
    return _Peer(base, base, auth, credential_forms(url=url))


def _hide(text: str, secrets: Sequence[str]) -> str:
    return mask(text, secrets, "***")


def _excerpt(body: bytes, content_type: str) -> str:
    """A short excerpt of an error answer: Alertmanager's own message (a JSON string or an
    object with ``message``), plain text cut short, nothing of an HTML page."""
    if "html" in content_type:
        return ""
    text = body[: EXCERPT * 8].decode("utf-8", errors="replace")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("message"), str):
        text = value["message"]
    text = " ".join(text.split())
    if text.lstrip().startswith("<"):
        return ""  # markup without a content type saying so
    return text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")


def _time(value: Any, where: str) -> int | None:
    if not isinstance(value, str):
        raise _BadAnswer(f"{where}: not a time")
    try:
        return parse_rfc3339(value, clamp=True)
    except ValueError:
        raise _BadAnswer(f"{where}: not a time") from None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def parse_alert(item: Any, where: str) -> AmAlert:
    """One entry of ``GET /api/v2/alerts``; ``_BadAnswer`` when it lacks what identifies it."""
    if not isinstance(item, dict):
        raise _BadAnswer(f"{where}: not an object")
    fp = item.get("fingerprint")
    if not isinstance(fp, str) or not fp:
        raise _BadAnswer(f"{where}.fingerprint: missing or not a string")
    labels = item.get("labels")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _BadAnswer(f"{where}.labels: not an object of strings")
    starts_at = _time(item.get("startsAt"), f"{where}.startsAt")
    if starts_at is None:
        raise _BadAnswer(f"{where}.startsAt: not a time")
    ends_at = None
    if isinstance(item.get("endsAt"), str):
        try:
            ends_at = parse_rfc3339(item["endsAt"], clamp=True)
        except ValueError:
            ends_at = None  # the start identifies an alert; its end is only shown
    status = _object(item.get("status"))
    state = status.get("state")
    receivers = item.get("receivers")
    if not isinstance(receivers, list):
        receivers = []
    generator = item.get("generatorURL")
    return AmAlert(
        fingerprint=fp,
        labels=dict(labels),
        starts_at=starts_at,
        # a state this version does not know yet: the alert is there, so it counts as active
        state=state if state in _STATES else "active",
        annotations=_strings(item.get("annotations")),
        ends_at=ends_at,
        generator_url=generator if isinstance(generator, str) else "",
        silenced_by=_ids(status.get("silencedBy")),
        inhibited_by=_ids(status.get("inhibitedBy")),
        receivers=tuple(
            r["name"] for r in receivers if isinstance(r, dict) and isinstance(r.get("name"), str)
        ),
    )


def render_matcher(matcher: Mapping[str, Any]) -> str:
    """A matcher as amtool shows it: ``name="value"``, ``name=~"re"``, ``name!="v"``..."""
    name, value = matcher.get("name"), matcher.get("value")
    if not isinstance(name, str) or not isinstance(value, str):
        raise _BadAnswer("a matcher without a name or value")
    equal = matcher.get("isEqual", True) is not False  # absent before isEqual existed
    regex = matcher.get("isRegex") is True
    op = ("=" if equal else "!") + ("~" if regex else ("" if equal else "="))
    return f"{name}{op}{json.dumps(value, ensure_ascii=False)}"


def parse_silence(item: Any, where: str) -> AmSilence:
    """One entry of ``GET /api/v2/silences``; ``_BadAnswer`` when it is malformed."""
    if not isinstance(item, dict):
        raise _BadAnswer(f"{where}: not an object")
    sid = item.get("id")
    if not isinstance(sid, str) or not sid:
        raise _BadAnswer(f"{where}.id: missing or not a string")
    state = _object(item.get("status")).get("state")
    if not isinstance(state, str):
        raise _BadAnswer(f"{where}.status.state: missing")
    starts_at = _time(item.get("startsAt"), f"{where}.startsAt")
    ends_at = _time(item.get("endsAt"), f"{where}.endsAt")
    if starts_at is None or ends_at is None:
        raise _BadAnswer(f"{where}: no start or end")
    matchers = item.get("matchers")
    if not isinstance(matchers, list) or not all(isinstance(m, dict) for m in matchers):
        raise _BadAnswer(f"{where}.matchers: not a list of objects")
    created_by, comment = item.get("createdBy"), item.get("comment")
    return AmSilence(
        id=sid,
        state=state,
        created_by=created_by if isinstance(created_by, str) else "",
        comment=comment if isinstance(comment, str) else "",
        starts_at=starts_at,
        ends_at=ends_at,
        matchers=tuple(render_matcher(m) for m in matchers),
    )


def parse_silences(answer: Any, shown: str) -> list[AmSilence]:
    """The silences of an answer; a malformed entry is skipped (a silence the bridge cannot
    read describes nothing, and it resolves nothing either)."""
    if not isinstance(answer, list):
        raise _BadAnswer("not a list")
    out = []
    for n, item in enumerate(answer):
        try:
            out.append(parse_silence(item, f"silences[{n}]"))
        except _BadAnswer as exc:
            log.debug("Alertmanager at %s: a silence skipped: %s", shown, escape_controls(str(exc)))
    return out


class AlertmanagerClient:
    """Alertmanager's API v2 on one cluster (its peers' base URLs, a path prefix allowed).

    Authentication: a bearer ``token``, or ``basic_user`` and ``basic_password``, or the user
    and password of a URL (``http://user:pass@host``, never shown). ``ca_file`` is the CA
    bundle that verifies the peers' TLS certificates. Each request must be done within
    ``timeout_s``."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        session: aiohttp.ClientSession,
        token: Secret | None = None,
        basic_user: str | None = None,
        basic_password: Secret | None = None,
        ca_file: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not urls:
            raise ValueError("no Alertmanager URL")
        self._peers = [_peer(u) for u in urls]
        self._session = session
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._headers = {"Accept": "application/json"}
        self._auth: str | None = None  # the Authorization header, if configured
        self._secrets: list[str] = []
        if token is not None:
            self._auth = f"Bearer {token.reveal()}"
            self._secrets += credential_forms(token=token)
        elif basic_user is not None:
            password = basic_password.reveal() if basic_password is not None else ""
            self._auth = aiohttp.encode_basic_auth(basic_user, password)
            self._secrets += credential_forms(user=basic_user, password=password)
        # Built once: loading a CA bundle reads and parses files.
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._last = 0  # the index of the peer that answered last

    @property
    def peers(self) -> tuple[str, ...]:
        """The peers' URLs without credentials."""
        return tuple(p.shown for p in self._peers)

    def _order(self) -> list[int]:
        n = len(self._peers)
        first = self._last % n
        return [first, *(i for i in range(n) if i != first)]

    async def _request(
        self, peer: _Peer, method: str, path: str, body: Any = None
    ) -> tuple[int, bytes, str]:
        """One request: (status, body, content type). Raises ``AmError`` for what the network
        does, for a redirect and for an answer over ``MAX_ANSWER_BYTES``; any status is
        returned."""
        where = f"{method} {path}"
        secrets = [*self._secrets, *peer.secrets]
        # The configured token or user, else the URL's own user and password.
        auth = self._auth or peer.auth
        headers = self._headers if auth is None else {**self._headers, "Authorization": auth}
        try:
            async with self._session.request(
                method,
                peer.base + path,
                headers=headers,
                json=body,
                ssl=self._ssl,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                if 300 <= resp.status < 400:
                    location = _peer(resp.headers.get("Location", "?")).shown
                    raise AmError(
                        "http_error",
                        peer.shown,
                        where,
                        f"HTTP {resp.status}, a redirect to {_hide(location, secrets)}: "
                        "configure the address it redirects to",
                        status=resp.status,
                    )
                limit = MAX_ANSWER_BYTES
                if resp.content_length is not None and resp.content_length > limit:
                    raise AmError("too_large", peer.shown, where, _too_large(resp.content_length))
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise AmError("too_large", peer.shown, where, _too_large(None))
                    chunks.append(chunk)
                return resp.status, b"".join(chunks), resp.content_type
        except AmError:
            raise
        except TimeoutError:
            raise AmError(
                "timeout", peer.shown, where, f"no answer within {self._timeout_s:g} s"
            ) from None
        except aiohttp.InvalidURL:
            raise AmError("unreachable", peer.shown, where, "an invalid URL") from None
        except aiohttp.ClientConnectorError as exc:
            os_error = exc.os_error
            reason = os_error.strerror or str(os_error) or type(os_error).__name__
            raise AmError(
                "unreachable", peer.shown, where, f"cannot connect: {_hide(reason, secrets)}"
            ) from None
        except aiohttp.ClientPayloadError:
            raise AmError(
                "bad_answer", peer.shown, where, "truncated answer (the connection closed early)"
            ) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            text = _hide(str(exc).replace(peer.base, peer.shown), secrets)
            raise AmError(
                "unreachable", peer.shown, where, f"{type(exc).__name__}: {text}"
            ) from None

    def _http_error(
        self, peer: _Peer, where: str, status: int, raw: bytes, content_type: str
    ) -> AmError:
        # A refusal's body is not kept at all: auth proxies and gateways echo the request's
        # Authorization there, in forms no list of secrets can foresee.
        shown = "" if status in (401, 403) else _excerpt(raw, content_type)
        excerpt = _hide(shown, [*self._secrets, *peer.secrets])
        detail = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
        return AmError("http_error", peer.shown, where, detail, status=status)

    async def _json(self, peer: _Peer, method: str, path: str, body: Any = None) -> Any:
        """A 2xx answer's JSON; ``AmError`` ("http_error", "bad_answer", ...) otherwise."""
        status, raw, content_type = await self._request(peer, method, path, body)
        if not 200 <= status < 300:
            raise self._http_error(peer, f"{method} {path}", status, raw, content_type)
        try:
            return json.loads(raw)
        except ValueError as exc:
            # cut short: the parser ran out of text (possibly inside a string)
            truncated = isinstance(exc, json.JSONDecodeError) and (
                exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")
            )
            detail = "truncated JSON" if truncated and raw.strip() else "not JSON"
            raise AmError("bad_answer", peer.shown, f"{method} {path}", detail) from None

    async def _view(self, peer: _Peer, up_since: int, fetched_at: int) -> AmView:
        receivers = await self._json(peer, "GET", "/api/v2/receivers")
        if not isinstance(receivers, list):
            raise AmError("bad_answer", peer.shown, "GET /api/v2/receivers", "not a list")
        names = frozenset(
            r["name"] for r in receivers if isinstance(r, dict) and isinstance(r.get("name"), str)
        )
        answer = await self._json(peer, "GET", "/api/v2/alerts")
        if not isinstance(answer, list):
            raise AmError("bad_answer", peer.shown, "GET /api/v2/alerts", "not a list")
        alerts: dict[str, AmAlert] = {}
        try:
            for n, item in enumerate(answer):
                alert = parse_alert(item, f"alerts[{n}]")
                alerts[alert.fingerprint] = alert
        except _BadAnswer as exc:
            raise AmError("bad_answer", peer.shown, "GET /api/v2/alerts", str(exc)) from None
        silences = await self._silences(peer)
        return AmView(
            peer=peer.shown,
            fetched_at=fetched_at,
            up_since=up_since,
            alerts=alerts,
            silences={s.id: s for s in silences},
            receivers=names,
        )

    async def _up_since(self, peer: _Peer) -> int:
        status = await self._json(peer, "GET", "/api/v2/status")
        uptime = status.get("uptime") if isinstance(status, dict) else None
        try:
            up_since = _time(uptime, "uptime")
        except _BadAnswer as exc:
            raise AmError("bad_answer", peer.shown, "GET /api/v2/status", str(exc)) from None
        if up_since is None:
            raise AmError("bad_answer", peer.shown, "GET /api/v2/status", "uptime: not a time")
        return up_since

    async def _silences(self, peer: _Peer) -> list[AmSilence]:
        answer = await self._json(peer, "GET", "/api/v2/silences")
        try:
            return parse_silences(answer, peer.shown)
        except _BadAnswer as exc:
            raise AmError("bad_answer", peer.shown, "GET /api/v2/silences", str(exc)) from None

    async def fetch(self, grace_s: float) -> Fetched:
        """Every peer's answer, merged (``core.reconcile.merge_views``): their alerts, silences
        and receivers, asked for at ``fetched_at`` (taken before the requests), when at least
        one peer is up for ``grace_s``. Every peer is asked, not the first that answers: an
        alert is resolved only when no peer that answers lists it (a peer that Prometheus does
        not send to lists nothing). Never raises for what the peers do: ``errors`` and ``young``
        say why there is no view."""
        order = self._order()

        async def ask(peer: _Peer) -> AmView | int:
            """A trusted peer's view, or a young peer's start (its view is asked for only
            when some peer is trusted)."""
            up_since = await self._up_since(peer)
            if not trusted(up_since, self._clock(), grace_s):
                return up_since
            return await self._view(peer, up_since, self._clock())

        # At once, not one after another: a peer that does not answer costs its timeout once.
        got = await asyncio.gather(*(ask(self._peers[i]) for i in order), return_exceptions=True)
        errors: list[AmError] = []
        young: list[tuple[_Peer, int]] = []
        answers: list[AmView] = []
        first: int | None = None
        for index, result in zip(order, got, strict=True):
            if isinstance(result, AmError):
                log.debug("%s", result)
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result  # a bug, or cancellation: not a peer's doing
            elif isinstance(result, AmView):
                answers.append(result)
                first = index if first is None else first
            else:
                young.append((self._peers[index], result))
        shown = tuple(peer.shown for peer, _ in young)
        if first is None:
            return Fetched(None, tuple(errors), shown)  # young peers' alerts decide nothing
        self._last = first
        # A young peer cannot say an alert is gone, but one it lists is not.
        listed = await asyncio.gather(
            *(self._view(peer, up_since, self._clock()) for peer, up_since in young),
            return_exceptions=True,
        )
        views: list[AmView] = []
        for result in listed:
            if isinstance(result, AmError):
                log.debug("%s", result)
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                views.append(result)
        return Fetched(merge_views(answers, views), tuple(errors), shown)

    async def _first(self, call: Callable[[_Peer], Any], stop: Callable[[AmError], bool]) -> Any:
        """``call`` on each peer in turn until one succeeds; the last error when none does
        (or the first that ``stop`` says another peer would answer the same)."""
        last: AmError | None = None
        for index in self._order():
            try:
                result = await call(self._peers[index])
            except AmError as exc:
                log.debug("%s", exc)
                if stop(exc):
                    raise
                last = exc
                continue
            self._last = index
            return result
        assert last is not None
        raise last

    async def silences(self) -> list[AmSilence]:
        """Every silence (active, pending and expired) of the first peer that answers."""
        result: list[AmSilence] = await self._first(self._silences, lambda _e: False)
        return result

    async def create_silence(
        self,
        matchers: Sequence[Mapping[str, Any]],
        starts_at: int,
        ends_at: int,
        created_by: str,
        comment: str,
    ) -> str:
        """Create a silence (times in ns) on the first peer that accepts it; its id.

        A 400 is Alertmanager refusing the silence itself, which every peer would refuse too:
        raised at once (``AmError`` "http_error", ``status`` 400, or 422 when the body fails the
        API's schema, e.g. no matchers; Alertmanager's words in the message). Only a peer that
        could not have made the silence (unreachable, or an error status) hands over to the
        next: after a timeout or an unreadable answer the silence may exist, and asking another
        peer could make a second one; the error is raised, and the caller finds the silence by
        its comment when it tries again (``bridge.silences`` does)."""
        body = {
            "matchers": [dict(m) for m in matchers],
            "startsAt": format_ns(starts_at),
            "endsAt": format_ns(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        path = "/api/v2/silences"

        async def post(peer: _Peer) -> str:
            answer = await self._json(peer, "POST", path, body)
            sid = answer.get("silenceID") if isinstance(answer, dict) else None
            if not isinstance(sid, str) or not sid:
                raise AmError("bad_answer", peer.shown, f"POST {path}", "no silenceID")
            return sid

        result: str = await self._first(post, _no_second_try)
        return result

    async def expire_silence(self, silence_id: str) -> bool:
        """Expire a silence: True when Alertmanager accepted it, False when it does not know the
        id; ``AmError`` otherwise.

        Alertmanager 0.25 answers an unknown id with 500 "silence not found" (not the 404 its
        API documents; both mean False here), and an id that is not a UUID with 422 (False too:
        no such silence can exist). Expiring an already expired silence is answered 200, so
        True does not prove that this call ended it."""
        path = f"/api/v2/silence/{quote(silence_id, safe='')}"

        async def delete(peer: _Peer) -> bool:
            status, raw, content_type = await self._request(peer, "DELETE", path)
            if 200 <= status < 300:
                return True
            if status in (404, 422) or (status == 500 and b"not found" in raw):
                return False
            raise self._http_error(peer, f"DELETE {path}", status, raw, content_type)

        result: bool = await self._first(delete, lambda _e: False)
        return result


def _no_second_try(err: AmError) -> bool:
    """Whether a failed create must not go on to the next peer: the silence is refused
    everywhere, or it may have been made."""
    return err.status in REFUSED or err.reason in ("timeout", "bad_answer", "too_large")


def _too_large(size: int | None) -> str:
    limit = f"{MAX_ANSWER_BYTES // 1024 // 1024} MiB"
    if size is None:
        return f"the answer is larger than {limit}"
    return f"the answer is larger than {limit} ({size} bytes)"
