"""``jira``: a Jira Cloud issue (REST API v3) for each follow-up item, never two.

Only ``ticket`` messages are sent (other events are skipped). Each item's issue is found again
by its marker label (``<label_prefix>-<incident>-<item>``) with a JQL search in the project
before it is created, and the keys are kept in the target's state (``bridge.targets._tickets``
says how a retry or a lost answer never opens a second issue). The description is an Atlassian
Document (ADF) built from the rendered template: a blank line starts a paragraph, a line that
starts with ``- `` is a list item, and http(s) URLs become links; nothing in the text can be
markup, since ADF is a tree of nodes and not a markup language.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from pydantic import Field, field_validator

from bridge.core.secrets import Secret
from bridge.core.text import escape_controls
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import Notification, RetryableError
from bridge.targets import _http
from bridge.targets._tickets import Item, Ticket, TicketConfig, TicketTarget

SUMMARY_MAX = 255
# Jira refuses a text field over 32,767 characters; the description's document (its JSON) is
# kept under this.
DESCRIPTION_MAX = 32_000
LABEL_MAX = 255
_URL = re.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?"
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REFUSALS = {401: "jira_unauthorized", 403: "jira_forbidden", 404: "jira_not_found"}


class JiraConfig(TicketConfig):
    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    email: str = Field(min_length=1)
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,254}$")
    issue_type: str = Field(default="Task", min_length=1)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not label or len(label) > LABEL_MAX or any(c.isspace() for c in label):
                raise ValueError(f"a Jira label is 1-{LABEL_MAX} characters without spaces")
        return labels


# -- Atlassian Document Format -------------------------------------------------------------------


def _text(value: str, href: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if href is not None:
        node["marks"] = [{"type": "link", "attrs": {"href": href}}]
    return node


def _inline(line: str) -> list[dict[str, Any]]:
    """Text nodes of one line, its http(s) URLs as links (trailing punctuation, and a ")"
    that closes nothing opened in the URL, belong to the sentence)."""
    line = _CONTROLS.sub(" ", line)
    nodes: list[dict[str, Any]] = []
    pos = 0
    for match in _URL.finditer(line):
        url = match.group(0)
        while url and (
            url[-1] in _TRAILING or (url[-1] == ")" and url.count(")") > url.count("("))
        ):
            url = url[:-1]
        if not _URL.fullmatch(url):
            continue
        start = match.start()
        if start > pos:
            nodes.append(_text(line[pos:start]))
        nodes.append(_text(url, href=url))
        pos = start + len(url)
    if pos < len(line):
        nodes.append(_text(line[pos:]))
    return nodes


def _paragraph(lines: list[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if i:
            content.append({"type": "hardBreak"})
        content.extend(_inline(line))
    return {"type": "paragraph", "content": content}


def _block(kind: str, lines: list[str]) -> dict[str, Any]:
    if kind == "p":
        return _paragraph(lines)
    items = [{"type": "listItem", "content": [_paragraph([line])]} for line in lines]
    return {"type": "bulletList", "content": items}


def adf(text: str) -> dict[str, Any]:
    """An ADF document (version 1) from plain text: paragraphs at blank lines, the lines of a
    paragraph joined by hard breaks, ``- `` lines as a bullet list, URLs as links."""
    content: list[dict[str, Any]] = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip("\n")):
        run: list[str] = []
        kind = "p"
        for line in (line.rstrip() for line in block.split("\n") if line.strip()):
            this = "li" if line.startswith("- ") and line[2:].strip() else "p"
            if this != kind and run:
                content.append(_block(kind, run))
                run = []
            kind = this
            run.append(line[2:] if this == "li" else line)
        if run:
            content.append(_block(kind, run))
    return {"type": "doc", "version": 1, "content": content}


def _size(doc: dict[str, Any]) -> int:
    return len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def description(text: str, limit: int = DESCRIPTION_MAX) -> dict[str, Any]:
    """``adf(text)``, the text cut (with an ellipsis) until the document fits ``limit``: in
    proportion to the document's size (its nodes add to the text), a little more each time."""
    doc = adf(text)
    for attempt in range(1, 9):
        size = _size(doc)
        if size <= limit:
            break
        keep = int(len(text) * limit / size * (1 - 0.02 * attempt))
        text = truncate(text, max(0, keep))
        doc = adf(text)
    return doc


def jql_string(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the target ----------------------------------------------------------------------------------


class JiraTarget(TicketTarget):
    type_name = "jira"
    handle = "jira"
    Config = JiraConfig
    config: JiraConfig

    def _api(self, path: str) -> str:
        return f"{self.config.url.rstrip('/')}/rest/api/3/{path}"

    def browse(self, key: str) -> str:
        return f"{self.config.url.rstrip('/')}/browse/{key}"

    def _headers(self) -> dict[str, str]:
        pair = f"{self.config.email}:{self.config.api_token.reveal()}".encode()
        return {
            "Authorization": "Basic " + base64.b64encode(pair).decode("ascii"),
            "Accept": "application/json",
        }

    def search_request(self, n: Notification, item: Item) -> dict[str, Any]:
        jql = (
            f"project = {jql_string(self.config.project)}"
            f" AND labels = {jql_string(self.marker(n, item))} ORDER BY created ASC"
        )
        return {"jql": jql, "fields": ["summary", "labels"], "maxResults": 10}

    def issue(self, n: Notification, item: Item) -> dict[str, Any]:
        """The create request of one item's issue."""
        rendered = self.render(self.single(n, item))
        summary = rendered.title or item.text or str(n.incident.get("title") or "Follow-up")
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": truncate(" ".join(summary.split()), SUMMARY_MAX),
            "description": description(rendered.body),
            "labels": self.labels(n, item),
        }
        account = self.assignee(n, item.owner)
        if account:
            fields["assignee"] = {"accountId": account}
        return {"fields": fields}

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self.post_json(self._api(path), body)

    async def find(self, n: Notification, item: Item) -> Ticket | None:
        data = await self._post("search/jql", self.search_request(n, item))
        issues = data.get("issues") if isinstance(data, dict) else None
        if not isinstance(issues, list):
            raise RetryableError("jira_bad_response")
        keys = [str(i["key"]) for i in issues if isinstance(i, dict) and i.get("key")]
        return self.first_found(n, item, [Ticket(key, self.browse(key)) for key in keys])

    async def create(self, n: Notification, item: Item) -> Ticket:
        body = self.issue(n, item)
        # A person Jira cannot assign: no access to the project, a stale account id.
        data = await self.create_assigned(
            item,
            body,
            lambda b: self._post("issue", b),
            refused="jira_invalid_assignee",
            holder=body["fields"],
            key="assignee",
        )
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            # Created or not, nobody can tell: a retry searches first.
            raise RetryableError("jira_bad_response")
        return Ticket(key, self.browse(key))

    def _check(self, resp: _http.Response) -> None:
        self.judge(resp, self.deps.clock())

    def _refusal(self, resp: _http.Response, fallback: str) -> str:
        """A bounded reason for a refused request; Jira's own words go to the log."""
        data = resp.json()
        errors = data.get("errors") if isinstance(data, dict) else None
        errors = errors if isinstance(errors, dict) else {}
        messages = data.get("errorMessages") if isinstance(data, dict) else None
        messages = messages if isinstance(messages, list) else []
        words = [f"{k}: {v}" for k, v in errors.items()] + [str(m) for m in messages]
        if words:
            self.deps.logger.warning(
                "jira target %s: HTTP %d: %s",
                self.name,
                resp.status,
                escape_controls("; ".join(words))[:1000],
            )
        if resp.status in _REFUSALS:
            return _REFUSALS[resp.status]
        if resp.status == 400:
            if len(errors) == 1:
                field = re.sub(r"[^a-z0-9_]", "_", str(next(iter(errors))).lower())
                return f"jira_invalid_{field}" if _FIELD.match(field) else "jira_invalid_fields"
            return "jira_invalid_fields" if errors else "jira_invalid_request"
        if resp.status == 410:
            return "jira_gone"
        return fallback
