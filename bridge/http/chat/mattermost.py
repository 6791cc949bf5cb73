"""Mattermost's routes (docs/chat.md): the ``/incident`` slash command (form-encoded; the
command's token in the body, or as ``Authorization: Token ...``) and the buttons of
interactive messages (the token in their ``context``), the token compared in constant time.
"""

from __future__ import annotations

import json

from aiohttp import web

from bridge.core import chat
from bridge.core.jsontext import without_nul
from bridge.core.secrets import Secret
from bridge.core.values import parse_id
from bridge.http.chat import common
from bridge.service import AppState, act
from bridge.store.interface import ActionAnswer, Idempotency, StoreUnavailable


def _mattermost_token(state: AppState) -> Secret:
    token = state.settings.mattermost_command_token
    if token is None:
        raise web.HTTPNotFound()
    return token


@common.never_500
async def mattermost_command(request: web.Request) -> web.Response:
    """Mattermost's ``/incident`` (form-encoded; the command's token in the body, or as
    ``Authorization: Token ...``)."""
    state = request.app[AppState.KEY]
    token = _mattermost_token(state)
    raw = await common.read_body(request)
    form = common.form_fields(raw)
    given = form.get("token") or request.headers.get("Authorization", "").removeprefix("Token ")
    if not given or not token.equals(given):
        common.log.warning("mattermost command refused: bad or missing token")
        return common.refuse(401, "not a valid request from Mattermost")
    user_id = form.get("user_id", "")
    if not user_id:
        return common.refuse(400, "no user_id")
    who = common.person_of(state, "mattermost", user_id)
    parsed = chat.parse(
        form.get("text", ""), who.name, platform="mattermost", people=common.people(state)
    )
    if isinstance(parsed, chat.ParseError):
        return common.command_answer(parsed.text)
    trigger = form.get("trigger_id")
    idem = (
        Idempotency("chat mattermost", trigger, common.request_digest(request, raw))
        if trigger
        else None
    )
    return await common.run_command(
        request, "mattermost", parsed, who, idem, form.get("response_url", "")
    )


@common.never_500
async def mattermost_action(request: web.Request) -> web.Response:
    """A button of an interactive message: ``context`` carries the action, the incident and
    the command's token (Mattermost does not sign these requests)."""
    state = request.app[AppState.KEY]
    token = _mattermost_token(state)
    raw = await common.read_body(request)
    try:
        body = json.loads(without_nul(raw))
    except ValueError:
        body = None
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(context, dict):
        return common.refuse(401, "not a valid request from Mattermost")
    given = str(context.get("token", ""))
    if not given or not token.equals(given):
        common.log.warning("mattermost action refused: bad or missing token")
        return common.refuse(401, "not a valid request from Mattermost")
    action, incident = str(context.get("action", "")), str(context.get("incident", ""))
    user_id = str(body.get("user_id", ""))
    if action not in chat.BUTTONS or not user_id:
        return common.refuse(400, "not a button of the bridge")
    incident_id = parse_id(incident)
    if incident_id is None:
        return web.json_response({"ephemeral_text": common.not_an_id(incident)})
    who = common.person_of(state, "mattermost", user_id)
    if who.read_only:
        return web.json_response({"ephemeral_text": common.READ_ONLY})
    command = chat.button_command(action, who.name)
    assert command is not None
    key = str(body.get("trigger_id") or "")
    idem = Idempotency("chat mattermost", key, common.request_digest(request, raw)) if key else None
    try:
        answer: ActionAnswer | None = await act(state, incident_id, command, idempotency=idem)
    except StoreUnavailable:
        answer = None
    # The post is left as it is (the bridge's messages reach Mattermost through a webhook);
    # the one who pressed reads what was done, the channel reads it with the next message.
    return web.json_response({"ephemeral_text": common.answer_text(incident_id, answer)[0]})
