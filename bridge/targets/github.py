"""``github``: a GitHub issue for each follow-up item, never two.

Only ``ticket`` messages are sent (other events are skipped). Each item's issue is found again
by its marker label (``<label_prefix>-<incident>-<item>``) in the repository's issues, open or
closed, before it is created, and the numbers are kept in the target's state
(``bridge.targets._tickets`` says how a retry or a lost answer never opens a second issue).
The body is the rendered Markdown template: every value is escaped, so text from people and
alerts can neither ping anyone (``@`` is followed by a zero-width space) nor inject HTML.

GitHub drops the labels and assignees of a new issue without a word when the token may not set
them (it needs write, or triage, access): the marker label is then missing and a lost answer
could not be found again, so the target warns when the created issue lacks it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import Field, field_validator

from bridge.core.secrets import Secret
from bridge.core.text import escape_controls
from bridge.delivery.classify import retry_hint
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import Notification, RetryableError
from bridge.targets import _http
from bridge.targets._tickets import Item, Ticket, TicketConfig, TicketTarget

TITLE_MAX = 256
BODY_MAX = 65_536
LABEL_MAX = 50
API_VERSION = "2022-11-28"
# GitHub: a rate limit answer without any hint means "wait at least a minute".
RATE_LIMIT_WAIT_S = 60.0
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_UNESCAPE = re.compile(r"\\([\\`*_~|>\[\]()#<{}])")
_REFUSALS = {
    401: "github_unauthorized",
    403: "github_forbidden",
    404: "github_not_found",
    410: "github_issues_disabled",
}


class GitHubConfig(TicketConfig):
    api_url: str = Field(default="https://api.github.com", pattern=r"^https?://[^\s?#]+$")
    token: Secret
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
    settle_s: float = Field(default=10.0, ge=0, le=3600)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not label.strip() or len(label) > LABEL_MAX or "," in label:
                raise ValueError(f"a GitHub label is 1-{LABEL_MAX} characters without commas")
        return labels


def plain_title(markdown: str) -> str:
    """The template's title, written in Markdown, as the plain text an issue title is: the
    backslash escapes removed (``@`` keeps its zero-width space: no mention either way)."""
    return _UNESCAPE.sub(r"\1", " ".join(markdown.split()))


class GitHubTarget(TicketTarget):
    type_name = "github"
    handle = "github"
    markup = "markdown"
    Config = GitHubConfig
    config: GitHubConfig

    def _repo_url(self, path: str) -> str:
        owner, name = self.config.repo.split("/", 1)
        return f"{self.config.api_url.rstrip('/')}/repos/{quote(owner)}/{quote(name)}/{path}"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.token.reveal()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }

    def search_request(self, n: Notification, item: Item) -> dict[str, Any]:
        return {
            "labels": self.marker(n, item),
            "state": "all",
            "sort": "created",
            "direction": "asc",
            "per_page": "10",
        }

    def issue(self, n: Notification, item: Item) -> dict[str, Any]:
        """The create request of one item's issue."""
        rendered = self.render(self.single(n, item))
        title = plain_title(rendered.title) or item.text or str(n.incident.get("title") or "")
        body: dict[str, Any] = {
            "title": truncate(" ".join(title.split()) or "Follow-up", TITLE_MAX),
            "body": truncate(rendered.body, BODY_MAX, "markdown"),
            "labels": self.labels(n, item),
        }
        login = self.assignee(n, item.owner)
        if login:
            body["assignees"] = [login]
        return body

    async def find(self, n: Notification, item: Item) -> Ticket | None:
        url = self._repo_url("issues") + "?" + urlencode(self.search_request(n, item))
        resp = await _get(self, url)
        self._check(resp)
        data = resp.json()
        if not isinstance(data, list):
            raise RetryableError("github_bad_response")
        label = self.marker(n, item)
        found = [
            i
            for i in data
            if isinstance(i, dict)
            and isinstance(i.get("number"), int)
            and "pull_request" not in i
            and label in _label_names(i)
        ]
        return self.first_found(n, item, [_ticket(i) for i in found])

    async def create(self, n: Notification, item: Item) -> Ticket:
        body = self.issue(n, item)
        # A login GitHub cannot assign: not a collaborator.
        data = await self.create_assigned(
            item,
            body,
            self._create,
            refused="github_invalid_assignees",
            holder=body,
            key="assignees",
        )
        if not isinstance(data, dict) or not isinstance(data.get("number"), int):
            raise RetryableError("github_bad_response")  # created or not: a retry searches
        if self.marker(n, item) not in _label_names(data):
            self.deps.logger.warning(
                "github target %s: GitHub dropped the labels of #%d (the token may not set "
                "labels: it needs write or triage access); a lost answer could not be found "
                "again",
                self.name,
                data["number"],
            )
        return _ticket(data)

    async def _create(self, body: dict[str, Any]) -> Any:
        return await self.post_json(self._repo_url("issues"), body)

    def _check(self, resp: _http.Response) -> None:
        now = self.deps.clock()
        if resp.status in (403, 429) and _rate_limited(resp):
            hint = retry_hint(resp.headers, None, now)
            raise RetryableError("rate_limited", RATE_LIMIT_WAIT_S if hint is None else hint)
        self.judge(resp, now)

    def _refusal(self, resp: _http.Response, fallback: str) -> str:
        """A bounded reason for a refused request; GitHub's own words go to the log."""
        data = resp.json()
        message = str(data.get("message") or "") if isinstance(data, dict) else ""
        errors = data.get("errors") if isinstance(data, dict) else None
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        words = [message] + [
            f"{e.get('field', '?')}: {e.get('message') or e.get('code', '')}" for e in errors
        ]
        self.deps.logger.warning(
            "github target %s: HTTP %d: %s",
            self.name,
            resp.status,
            escape_controls("; ".join(w for w in words if w))[:1000],
        )
        if resp.status in _REFUSALS:
            return _REFUSALS[resp.status]
        if resp.status == 422:
            fields = {str(e.get("field", "")).lower() for e in errors}
            if len(fields) == 1:
                field = re.sub(r"[^a-z0-9_]", "_", next(iter(fields)))
                return f"github_invalid_{field}" if _FIELD.match(field) else "github_invalid"
            return "github_invalid_fields" if fields else "github_invalid"
        return fallback


def _label_names(issue: dict[str, Any]) -> set[str]:
    labels = issue.get("labels")
    if not isinstance(labels, list):
        return set()
    names = (label.get("name") if isinstance(label, dict) else label for label in labels)
    return {str(name) for name in names if name}


def _ticket(issue: dict[str, Any]) -> Ticket:
    return Ticket(f"#{issue['number']}", str(issue.get("html_url") or ""))


def _rate_limited(resp: _http.Response) -> bool:
    """GitHub's primary and secondary rate limits: a 403 or 429 with ``retry-after``, with
    ``x-ratelimit-remaining: 0``, or whose message says so."""
    headers = {k.lower(): v for k, v in resp.headers.items()}
    if resp.status == 429 or "retry-after" in headers:
        return True
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        return True
    data = resp.json()
    message = str(data.get("message") or "") if isinstance(data, dict) else ""
    return "rate limit" in message.lower()


async def _get(target: GitHubTarget, url: str) -> _http.Response:
    """GET and read the answer, as ``_http.post`` does (errors without the URL)."""
    return await _http.request(
        target.deps, "GET", url, headers=target._headers(), timeout_s=target.config.timeout_s
    )
