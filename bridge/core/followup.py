"""The follow-up phase as pure functions: what the rules ask for once an incident is mitigated
(the checklist, the stabilization window, the PromQL checks, where tickets go), the checklist a
follow-up opens with, and people's commands on its items.

The service opens a follow-up for every incident that reaches ``mitigated`` (by its alerts or by
hand) and records its validation when the window ends (``store/followup.py``); people add, check
off, waive and reopen items through the API and CLI. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

from bridge.core.values import immutable

# An item's kind: ``check`` a plain item someone checks off; ``validate`` the bridge's own
# validation (quiet for the window, the PromQL checks pass), checked off by the bridge;
# ``review`` did monitoring, alerts and runbooks work, with the findings the bridge saw;
# ``action`` a permanent fix, which becomes a ticket in the route's ticket target.
ItemKind = Literal["check", "validate", "review", "action"]
ITEM_KINDS: tuple[ItemKind, ...] = get_args(ItemKind)
ItemState = Literal["open", "done", "waived"]
ITEM_STATES: tuple[ItemState, ...] = get_args(ItemState)

DEFAULT_STABILIZATION_S = 1800.0
# What stands on the timeline as the actor of what the bridge does by itself.
ACTOR = "incident-bridge"


@immutable
class ChecklistItem:
    """One item of a route's checklist, as the rules give it."""

    text: str
    kind: ItemKind = "check"


# The checklist without rules, or for a route whose rules do not give one.
DEFAULT_CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem("Create follow-up tickets for permanent fixes", "check"),
    ChecklistItem("Validate the production environment after recovery", "validate"),
    ChecklistItem("Review whether monitoring, alerts and runbooks worked", "review"),
)
VALIDATE_TEXT = DEFAULT_CHECKLIST[1].text
REVIEW_TEXT = DEFAULT_CHECKLIST[2].text


@immutable
class Check:
    """A PromQL check run at the end of the stabilization window: ``expr`` must give a result
    that meets ``expect`` (e.g. ``< 0.01``; the grammar is ``core/checks.py``'s)."""

    name: str
    expr: str
    expect: str


@immutable
class FollowUpPolicy:
    """A route's follow-up policy, after inheritance and defaults."""

    checklist: tuple[ChecklistItem, ...] = DEFAULT_CHECKLIST
    ticket_target: str | None = None
    stabilization_s: float = DEFAULT_STABILIZATION_S
    checks: tuple[Check, ...] = ()


DEFAULT_POLICY = FollowUpPolicy()
# Postmortem policy by severity without rules (the rules' defaults are the same, docs/rules.md).
DEFAULT_POSTMORTEM: Mapping[str, str] = MappingProxyType(
    {"sev1": "required", "sev2": "required", "sev3": "optional", "sev4": "none"}
)
NO_POLICIES: Mapping[str, FollowUpPolicy] = MappingProxyType({})


def opening_checklist(policy: FollowUpPolicy) -> tuple[ChecklistItem, ...]:
    """The items a follow-up opens with: the route's checklist, plus the bridge's validation
    and review items when the checklist has none (the validation checks itself off, the review
    carries the findings, so every follow-up has both)."""
    items = list(policy.checklist)
    kinds = {i.kind for i in items}
    if "validate" not in kinds:
        items.append(ChecklistItem(VALIDATE_TEXT, "validate"))
    if "review" not in kinds:
        items.append(ChecklistItem(REVIEW_TEXT, "review"))
    return tuple(items)
