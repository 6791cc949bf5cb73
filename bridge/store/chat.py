"""What chat commands read of the store: the incident whose dedicated Slack channel a command
or a message comes from (the Slack target keeps the channel's id in its per-incident state,
``target_state``)."""

from __future__ import annotations

import sqlite3

from bridge.core.values import immutable


@immutable
class ChannelIncident:
    """The incident of a dedicated channel, its route (for the route's chat settings) and the
    target that made the channel (whose token can read the channel's messages)."""

    incident_id: int
    route: str
    target: str


def incident_of_channel(conn: sqlite3.Connection, channel: str) -> ChannelIncident | None:
    """The incident whose dedicated channel is ``channel`` (the newest, should two share it)."""
    if not channel:
        return None
    row = conn.execute(
        "SELECT t.incident_id, i.route, t.target FROM target_state t "
        "JOIN incidents i ON i.id = t.incident_id "
        "WHERE CASE WHEN json_valid(t.state) THEN json_extract(t.state, '$.channel') END = ? "
        "ORDER BY t.incident_id DESC LIMIT 1",
        (channel,),
    ).fetchone()
    return None if row is None else ChannelIncident(int(row[0]), str(row[1]), str(row[2]))
