"""Chat as a client of the actions (docs/chat.md): Slack's slash command, buttons and events,
Mattermost's slash command and buttons, ``/api/v1/chat/...``.

Every request is verified first (Slack: the v0 HMAC signature, within 5 minutes, a signature
seen before refused; Mattermost: the command token, in constant time), its body bounded, then
parsed by ``core/chat.py`` into a core command that ``service.act`` applies with the person as
its actor, under an idempotency key the platform gives (``trigger_id``, ``event_id``, else the
signature): a retry (``X-Slack-Retry-Num``) or a replay never acts twice, across restarts too
(the ``idempotency_keys`` table). Slack wants an answer within 3 s: an action that takes longer
than ``ack_within_s`` is answered "working on it" and finished through ``response_url``.

One module per platform, ``slack`` and ``mattermost``, over ``common`` (what both share: the
chat state, the body, the person, a command run through ``service.act``, the ``response_url``
and its allowed origins). Imports go one way: the platforms import ``common``, never each other,
and ``common`` imports neither; this module only installs their routes.
"""

from __future__ import annotations

from aiohttp import web

from bridge.http.chat import mattermost, slack
from bridge.http.chat.common import KEY, PREFIX, ChatState, allowed_response_url
from bridge.service import AppState

__all__ = ["KEY", "ChatState", "allowed_response_url", "install"]


def install(app: web.Application, state: AppState) -> None:
    """The chat routes whose secret is configured (the others answer 404), and the chat state."""
    chat_state = ChatState()
    app[KEY] = chat_state

    async def drain(_: web.Application) -> None:
        await chat_state.drain()

    app.on_cleanup.append(drain)
    if state.settings.slack_signing_secret is not None:
        app.router.add_post(f"{PREFIX}/slack/commands", slack.slack_command)
        app.router.add_post(f"{PREFIX}/slack/interactions", slack.slack_interaction)
        app.router.add_post(f"{PREFIX}/slack/events", slack.slack_event)
    if state.settings.mattermost_command_token is not None:
        app.router.add_post(f"{PREFIX}/mattermost/commands", mattermost.mattermost_command)
        app.router.add_post(f"{PREFIX}/mattermost/actions", mattermost.mattermost_action)
