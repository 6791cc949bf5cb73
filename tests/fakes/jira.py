"""Jira Cloud REST API v3 fake: create issue and the JQL search; the contract it enforces is in
docs/contracts.md."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, answer_lost, json_body

EMAIL = "bridge@example.com"
API_TOKEN = "ATATT3xFfGF0-jiraSECRET-0123456789abcdef"
PROJECTS = {"OPS": "10000"}
ISSUE_TYPES = {"Task", "Bug", "Story"}
ACCOUNTS = {"5b10ac8d82e05b22cc7d4ef5", "712020:alice-account-id"}
FIELD_MAX = 32_767
NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"

_BLOCKS = {"paragraph", "bulletList", "orderedList", "heading", "codeBlock", "blockquote", "rule"}
_MARKS = {"strong", "em", "code", "strike", "underline", "link"}
# What the fake's JQL understands: `field = "value"` conditions joined by AND, an ORDER BY.
_CONDITION = re.compile(r'^\s*(project|labels)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')


def adf_problem(doc: Any) -> str | None:
    """Why ``doc`` is not a valid ADF document (the nodes the fake knows), or None."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return "not a doc of version 1"
    content = doc.get("content")
    if not isinstance(content, list):
        return "doc.content is not a list"
    for block in content:
        problem = _block_problem(block)
        if problem:
            return problem
    return None


def _block_problem(node: Any) -> str | None:
    if not isinstance(node, dict) or node.get("type") not in _BLOCKS:
        return f"unknown block node {node!r:.60}"
    kind = node["type"]
    content = node.get("content", [])
    if not isinstance(content, list):
        return f"{kind}.content is not a list"
    if kind in ("bulletList", "orderedList"):
        if not content:
            return f"{kind} without items"
        for item in content:
            if not isinstance(item, dict) or item.get("type") != "listItem":
                return f"{kind} holds a non-listItem"
            inner = item.get("content")
            if not isinstance(inner, list) or not inner:
                return "listItem without content"
            for child in inner:
                if problem := _block_problem(child):
                    return problem
        return None
    if kind in ("paragraph", "heading"):
        if kind == "heading" and (node.get("attrs") or {}).get("level") not in range(1, 7):
            return "heading without a level 1-6"
        for inline in content:
            if problem := _inline_problem(inline):
                return problem
    return None


def _inline_problem(node: Any) -> str | None:
    if not isinstance(node, dict):
        return "an inline node is not an object"
    if node.get("type") == "hardBreak":
        return None
    if node.get("type") != "text":
        return f"unknown inline node {node.get('type')!r}"
    text = node.get("text")
    if not isinstance(text, str) or not text:
        return "a text node must have non-empty text"
    for mark in node.get("marks", []):
        if not isinstance(mark, dict) or mark.get("type") not in _MARKS:
            return f"unknown mark {mark!r:.60}"
        if mark["type"] == "link":
            href = (mark.get("attrs") or {}).get("href")
            if not isinstance(href, str) or not href:
                return "a link mark needs attrs.href"
    return None


def _adf_text(doc: Any) -> int:
    """The characters a document holds as Jira counts a field's size (its JSON, roughly)."""
    return len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


class JiraFake(FakeServer):
    """Issues live in ``issues`` (key -> fields). ``search_lag`` makes a new issue invisible to
    that many searches (Jira's search is eventually consistent); ``lose_next_create`` creates
    the next issue and then answers 500 or closes the connection (the answer is lost);
    ``quota`` issues created, the next creates answer 429 with ``Retry-After: 5``."""

    def routes(self) -> None:
        r = self.app.router
        r.add_post("/rest/api/3/issue", self.create)
        r.add_post("/rest/api/3/search/jql", self.search)
        r.add_get("/rest/api/3/search/jql", self.search)
        # The old search endpoints are gone.
        r.add_route("*", "/rest/api/3/search", self.gone)
        r.add_route("*", "/rest/api/2/search", self.gone)
        self.issues: dict[str, dict[str, Any]] = {}
        self.hidden: dict[str, int] = {}  # key -> searches it is still invisible to
        self.search_lag = 0
        self.quota: int | None = None
        self.created = 0
        self._lose: list[str] = []
        self._next = 1

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"errorMessages": ["Rate limit exceeded."], "errors": {}}

    def lose_next_create(self, how: str = "500") -> None:
        """``how``: ``"500"`` (an error after the issue was created) or ``"close"`` (the
        connection drops before the answer)."""
        self._lose.append(how)

    def add_issue(self, project: str, summary: str, labels: list[str]) -> str:
        """An issue made some other way (another attempt, by hand)."""
        return self._store({"project": {"key": project}, "summary": summary, "labels": labels})

    def _store(self, fields: dict[str, Any]) -> str:
        key = f"{fields['project']['key']}-{self._next}"
        self._next += 1
        self.issues[key] = {**fields, "id": str(10000 + self._next)}
        if self.search_lag:
            self.hidden[key] = self.search_lag
        return key

    @staticmethod
    def refused(status: int, messages: list[str], errors: dict[str, str]) -> web.Response:
        return web.json_response({"errorMessages": messages, "errors": errors}, status=status)

    def _auth(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{EMAIL}:{API_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            # Jira answers a bad credential with 401 and a plain sentence.
            return web.Response(
                status=401,
                text="Client must be authenticated to access this resource.",
                headers={"WWW-Authenticate": 'Basic realm="protected-area"'},
            )
        return None

    async def gone(self, request: web.Request) -> web.Response:
        return self.refused(
            410,
            ["The requested API has been removed. Please migrate to /rest/api/3/search/jql."],
            {},
        )

    async def create(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        if self.quota is not None and self.created >= self.quota:
            # Jira's X-RateLimit-Reset is an ISO 8601 time (yyyy-MM-ddTHH:mmZ), not a number
            headers = {
                "Retry-After": "5",
                "X-RateLimit-Reset": "2026-11-27T04:07Z",
                "RateLimit-Reason": "jira-quota-based",
            }
            return web.json_response(self.rate_limit_body(5), status=429, headers=headers)
        body = json_body(await request.read())
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return self.refused(400, ["Request body is not valid: no fields"], {})
        errors: dict[str, str] = {}
        project = fields.get("project")
        key = project.get("key") if isinstance(project, dict) else None
        if key not in PROJECTS:
            errors["project"] = "Specify a valid project ID or key"
        issue_type = fields.get("issuetype")
        if not isinstance(issue_type, dict) or issue_type.get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "Specify an issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "Field 'summary' cannot contain newline."
        if "description" in fields:
            if adf_problem(fields["description"]) is not None:
                errors["description"] = NOT_ADF
            elif _adf_text(fields["description"]) > FIELD_MAX:
                errors["description"] = (
                    "The entered text is too long. It exceeds the allowed limit of 32,767 "
                    "characters."
                )
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "Field 'labels' must be an array of strings."
        else:
            for label in labels:
                if not label or any(c.isspace() for c in label):
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid."
                elif len(label) > 255:
                    errors["labels"] = "The label must not exceed 255 characters."
        if "assignee" in fields:
            assignee = fields["assignee"]
            account = assignee.get("accountId") if isinstance(assignee, dict) else None
            if account not in ACCOUNTS:
                errors["assignee"] = f"User '{account}' cannot be assigned issues."
        if errors:
            return self.refused(400, [], errors)
        issue_key = self._store(fields)
        self.created += 1
        if answer_lost(self._lose, request):
            return web.json_response(
                {"errorMessages": ["Internal server error"], "errors": {}}, status=500
            )
        issue = self.issues[issue_key]
        return web.json_response(
            {
                "id": issue["id"],
                "key": issue_key,
                "self": f"{self.url}/rest/api/3/issue/{issue['id']}",
            },
            status=201,
        )

    async def search(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if request.method == "GET":
            body: Any = dict(request.query)
        else:
            body = json_body(await request.read())
        if not isinstance(body, dict) or not isinstance(body.get("jql"), str):
            return self.refused(
                400,
                ["Invalid request payload. Refer to the REST API documentation and try again."],
                {},
            )
        jql = re.split(r"\s+ORDER\s+BY\s+", body["jql"], flags=re.I)[0]
        conditions: dict[str, str] = {}
        for part in re.split(r"\s+AND\s+", jql, flags=re.I):
            m = _CONDITION.match(part)
            if m is None:
                return self.refused(400, [f"Error in the JQL Query: cannot parse {part!r}."], {})
            conditions[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
        if "project" not in conditions:
            return self.refused(
                400,
                ["Unbounded JQL queries are not allowed here. Please add a search restriction."],
                {},
            )
        if conditions["project"] not in PROJECTS:
            return self.refused(
                400,
                [f"The value '{conditions['project']}' does not exist for the field 'project'."],
                {},
            )
        found = []
        for key, issue in self.issues.items():
            if issue["project"]["key"] != conditions["project"]:
                continue
            if "labels" in conditions and conditions["labels"] not in issue.get("labels", []):
                continue
            if self.hidden.get(key, 0) > 0:
                self.hidden[key] -= 1
                continue
            found.append(
                {
                    "id": issue["id"],
                    "key": key,
                    "self": f"{self.url}/rest/api/3/issue/{issue['id']}",
                    "fields": {"summary": issue["summary"], "labels": issue.get("labels", [])},
                }
            )
        limit = int(body.get("maxResults") or 50)
        return web.json_response({"issues": found[:limit], "isLast": len(found) <= limit})
