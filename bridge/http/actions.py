"""The write API: people's actions on an incident, ``POST /api/v1/incidents/{id}/<action>``.

Each handler checks the token (write scope), reads a small JSON body into its pydantic model,
builds the core command and hands it to ``service.act``: the same path the web page and chat
commands take. The models are also what the OpenAPI document is generated from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.core.actions import (
    MAX_TEXT,
    AddEntry,
    AssignRole,
    ChangeSeverity,
    Command,
    Dismiss,
    LinkComponents,
    Move,
    PostUpdate,
    ReleaseRole,
    Transition,
)
from bridge.core.followup import AddItem, FollowUpCommand, SetItem
from bridge.core.jsontext import without_nul
from bridge.core.policy import Role, Severity
from bridge.core.timeutil import parse_rfc3339
from bridge.http import auth
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import Id
from bridge.service import AppState, act
from bridge.store.interface import Idempotency, StoreUnavailable

# A write's body at most: a note of MAX_TEXT characters, escaped, fits with room to spare.
MAX_BODY = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255

Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Reason = Annotated[str, Field(max_length=MAX_TEXT)]


class ActionBody(BaseModel):
    """What every action may carry: who does it (default: the token's name)."""

    model_config = ConfigDict(extra="forbid")

    actor: Name | None = Field(
        default=None,
        description="who does it; default: the token's name. Only the API token and named "
        "tokens of scope `act-as` may name someone else (a 403 otherwise)",
    )


class TransitionBody(ActionBody):
    reason: Reason = Field(default="", description="why, recorded on the timeline")


class RoleBody(ActionBody):
    role: Role
    person: Name | None = Field(
        default=None,
        description="who takes the role (a hand-over for commander, scribe and liaison); "
        "with release: who gives it up (default: whoever holds it)",
    )
    release: bool = Field(default=False, description="give the role up instead of taking it")

    @model_validator(mode="after")
    def _person_to_assign(self) -> RoleBody:
        if not self.release and self.person is None:
            raise ValueError("person: required to assign a role (or set release)")
        return self


class EntryBody(ActionBody):
    text: Text
    corrects: Id | None = Field(
        default=None, description="the id of an earlier entry of the same kind it corrects"
    )


class ActionItemBody(EntryBody):
    owner: Name | None = Field(default=None, description="who will do it")


class UpdateBody(ActionBody):
    text: Text
    next_update_at: str | None = Field(
        default=None, description="when the next update is due (RFC 3339)"
    )
    next_update_in: int | None = Field(
        default=None, ge=60, le=7 * 86400, description="or: in how many seconds"
    )
    public: bool = Field(
        default=False,
        description="shown on the public status page (docs/status-page.md): its public_text "
        "(default: text) and public_title, nothing else of the incident",
    )
    public_text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] | None = Field(
        default=None, description="the text the public page shows instead of text"
    )
    public_title: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="the incident's title on the public page (default: the one given with an "
        "earlier public update, else a neutral one); the incident's own title is never shown",
    )

    @model_validator(mode="after")
    def _one_next(self) -> UpdateBody:
        if self.next_update_at is not None and self.next_update_in is not None:
            raise ValueError("next_update_at and next_update_in: give one of them")
        if self.next_update_at is not None:
            try:
                parse_rfc3339(self.next_update_at)
            except ValueError as exc:
                raise ValueError(f"next_update_at: {exc}") from None
        return self


ComponentIds = Annotated[list[Name], Field(max_length=100)]


class ComponentsBody(ActionBody):
    add: ComponentIds = Field(
        default_factory=list, description="components of the rules to link the incident to"
    )
    remove: ComponentIds = Field(default_factory=list, description="components to unlink it from")


def check_components(body: ComponentsBody, known: Collection[str]) -> None:
    """Every id a component of the rules, else a 400 naming the item."""
    for name in ("add", "remove"):
        for i, cid in enumerate(getattr(body, name)):
            if cid not in known:
                listed = ", ".join(known) or "none in the rules"
                raise HTTPError(
                    400, f"unknown component {cid!r}; known: {listed}", field=f"{name}.{i}"
                )


class SeverityBody(ActionBody):
    severity: Severity
    reason: Text


class DismissBody(ActionBody):
    reason: Text = Field(description="why: a false alarm, a test; recorded on the timeline")


class FollowUpItemBody(ActionBody):
    text: Text
    kind: Literal["check", "action"] = Field(
        default="check",
        description="`check` an item to check off; `action` a permanent fix, opened as a "
        "ticket in the route's ticket target",
    )
    owner: Name | None = Field(default=None, description="who will do it")


ItemId = Annotated[Id, Field(description="the item's id")]


class ItemBody(ActionBody):
    item: ItemId
    note: Reason = Field(default="", description="recorded with the change")


class WaiveBody(ActionBody):
    item: ItemId
    reason: Text = Field(description="why the item is not needed")


def error_field(loc: tuple[int | str, ...], message: str) -> str:
    if loc:
        return ".".join(str(p) for p in loc)
    head, sep, _ = message.partition(":")
    # A model validator names its field at the start of its message.
    return head.split()[-1] if sep and head.replace("_", "").isalpha() else "body"


async def _body(request: web.Request, model: type[ActionBody]) -> tuple[ActionBody, bytes]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise HTTPError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        # a NUL in a text is kept as U+FFFD (PostgreSQL's text cannot hold it)
        return model.model_validate_json(without_nul(raw.strip() or b"{}")), raw
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        field = error_field(tuple(err["loc"]), message)
        if err["type"] == "json_invalid":
            field, message = "body", f"not valid JSON: {err['ctx'].get('error', message)}"
        elif err["type"] == "model_type":
            field, message = "body", "must be a JSON object"
        elif err["type"] == "extra_forbidden":
            message = f"unknown field; known: {', '.join(model.model_fields)}"
        raise HTTPError(400, message, field=field) from None


# The other write routes (http/declare.py) read their bodies the same way.
read_body = _body


def idempotency(request: web.Request, scope: str, raw: bytes) -> Idempotency | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()):
        raise HTTPError(
            400,
            f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            field="Idempotency-Key",
        )
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode() + raw).hexdigest()
    return Idempotency(scope=scope, key=key, request=digest)


AnyCommand = Command | FollowUpCommand


def _handler(
    model: type[ActionBody], command: Callable[[Any, str], AnyCommand]
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        state: AppState = request.app[AppState.KEY]
        token = auth.authorize(request, state.api, write=True)
        incident_id = path_id(request, "incident")
        body, raw = await _body(request, model)
        if isinstance(body, ComponentsBody):
            check_components(body, state.runtime.components)
        idem = idempotency(request, token, raw)
        who = auth.actor(request, state.api, token, body.actor)
        try:
            answer = await act(state, incident_id, command(body, who), idempotency=idem)
        except StoreUnavailable:
            raise store_unavailable() from None
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        return web.json_response(dict(answer.body), status=answer.status, headers=headers)

    return handle


def _transition(move: Move) -> Callable[[Any, str], Command]:
    return lambda body, actor: Transition(actor, move, body.reason)


def _role(body: RoleBody, actor: str) -> Command:
    if body.release:
        return ReleaseRole(actor, body.role, body.person)
    assert body.person is not None
    return AssignRole(actor, body.role, body.person)


def _entry(kind: Literal["note", "decision"]) -> Callable[[Any, str], Command]:
    return lambda body, actor: AddEntry(actor, kind, body.text, corrects=body.corrects)


def _action_item(body: ActionItemBody, actor: str) -> Command:
    return AddEntry(actor, "action", body.text, owner=body.owner, corrects=body.corrects)


def _update(body: UpdateBody, actor: str) -> Command:
    due = None
    if body.next_update_at is not None:
        due = parse_rfc3339(body.next_update_at)
    return PostUpdate(
        actor,
        body.text,
        due,
        body.next_update_in,
        public=body.public,
        public_text=body.public_text,
        public_title=body.public_title,
    )


def _components(body: ComponentsBody, actor: str) -> Command:
    return LinkComponents(actor, tuple(body.add), tuple(body.remove))


def _severity(body: SeverityBody, actor: str) -> Command:
    return ChangeSeverity(actor, body.severity, body.reason)


def _dismiss(body: DismissBody, actor: str) -> Command:
    return Dismiss(actor, body.reason)


def _add_item(body: FollowUpItemBody, actor: str) -> AnyCommand:
    return AddItem(actor, body.text, body.kind, body.owner)


def _set_item(to: Literal["done", "open"]) -> Callable[[Any, str], AnyCommand]:
    return lambda body, actor: SetItem(actor, body.item, to, body.note)


def _waive(body: WaiveBody, actor: str) -> AnyCommand:
    return SetItem(actor, body.item, "waived", body.reason)


# path suffix -> (summary, request model, command builder); app.py serves them all and the
# OpenAPI document lists them from here.
ACTIONS: dict[str, tuple[str, type[ActionBody], Callable[[Any, str], AnyCommand]]] = {
    "acknowledge": ("Acknowledge the incident", TransitionBody, _transition("acknowledge")),
    "mitigate": ("Mark the incident mitigated by hand", TransitionBody, _transition("mitigate")),
    "resolve": ("Resolve the incident by hand", TransitionBody, _transition("resolve")),
    "close": ("Close a resolved incident", TransitionBody, _transition("close")),
    "dismiss": (
        "Dismiss a false alarm or a test: closed with the reason, no postmortem",
        DismissBody,
        _dismiss,
    ),
    "roles": ("Assign, hand over or release a role", RoleBody, _role),
    "notes": ("Add a note to the timeline", EntryBody, _entry("note")),
    "decisions": ("Record a decision", EntryBody, _entry("decision")),
    "actions": ("Record an action item", ActionItemBody, _action_item),
    "updates": ("Send the liaison's status update", UpdateBody, _update),
    "severity": ("Raise or lower the severity", SeverityBody, _severity),
    "components": (
        "Link the incident to components of the status page, or unlink it",
        ComponentsBody,
        _components,
    ),
    "followup/items": (
        "Add a follow-up item (an action item is ticketed)",
        FollowUpItemBody,
        _add_item,
    ),
    "followup/check": ("Check a follow-up item off", ItemBody, _set_item("done")),
    "followup/waive": ("Waive a follow-up item, with a reason", WaiveBody, _waive),
    "followup/reopen": ("Open a follow-up item again", ItemBody, _set_item("open")),
}


def routes() -> list[tuple[str, Callable[[web.Request], Any]]]:
    return [
        (f"/api/v1/incidents/{{id}}/{suffix}", _handler(model, command))
        for suffix, (_summary, model, command) in ACTIONS.items()
    ]
