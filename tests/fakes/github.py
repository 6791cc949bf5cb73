"""GitHub REST API (issues) fake: create an issue and list a repository's issues; the contract it
enforces is in docs/contracts.md."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, answer_lost, json_body

TOKEN = "github_pat_11AAAAAAA0githubSECRET0123456789abcdefghijklmnop"
REPO = "acme/checkout"
API_VERSION = "2022-11-28"
COLLABORATORS = {"bob-gh", "alice-gh"}
TITLE_MAX = 256
BODY_MAX = 65_536
LABEL_MAX = 50
DOCS = "https://docs.github.com/rest/issues/issues#create-an-issue"


class GitHubFake(FakeServer):
    """Issues live in ``issues`` (by number). ``push_access=False`` drops the labels and
    assignees of new issues without a word, as GitHub does for a token that may not set them;
    ``issues_enabled=False`` answers 410; ``lose_next_create`` creates the next issue and then
    answers 502 or closes the connection (the answer is lost); ``quota`` issues created, the
    next creates answer a secondary rate limit (403, ``retry-after: 60``). ``strict_headers`` (the default)
    refuses a request without ``Accept: application/vnd.github+json`` and
    ``X-GitHub-Api-Version``, which GitHub itself would default, so that the target always
    sends them."""

    def __init__(self) -> None:
        super().__init__()
        self.issues: dict[int, dict[str, Any]] = {}
        self.labels: set[str] = set()
        self.push_access = True
        self.issues_enabled = True
        self.strict_headers = True
        self.quota: int | None = None
        self.created = 0
        self._lose: list[str] = []
        self._scripted: list[tuple[int, Any]] = []

    def routes(self) -> None:
        r = self.app.router
        r.add_post("/repos/{owner}/{repo}/issues", self.create)
        r.add_get("/repos/{owner}/{repo}/issues", self.list)

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
            "before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            "status": "429",
        }

    def lose_next_create(self, how: str = "502") -> None:
        self._lose.append(how)

    def script_create(self, status: int, body: Any) -> None:
        """The next create answers ``status`` with ``body`` (and creates nothing)."""
        self._scripted.append((status, body))

    def add_issue(self, title: str, labels: list[str], state: str = "open") -> int:
        """An issue made some other way (another attempt, by hand)."""
        issue = self._store({"title": title, "body": "", "labels": labels, "assignees": []})
        issue["state"] = state
        return int(issue["number"])

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        number = len(self.issues) + 1
        labels = list(body.get("labels") or []) if self.push_access else []
        self.labels.update(labels)  # a label that does not exist yet is created
        issue = {
            "id": 1_000_000 + number,
            "number": number,
            "title": body["title"],
            "body": body.get("body"),
            "state": "open",
            "labels": [{"name": name} for name in labels],
            "assignees": [
                {"login": login}
                for login in (body.get("assignees") or [] if self.push_access else [])
            ],
            "html_url": f"https://github.example/{REPO}/issues/{number}",
            "url": f"{self.url}/repos/{REPO}/issues/{number}",
        }
        self.issues[number] = issue
        return issue

    @staticmethod
    def error(status: int, message: str, **extra: Any) -> web.Response:
        return web.json_response(
            {"message": message, "documentation_url": DOCS, "status": str(status), **extra},
            status=status,
        )

    def invalid(self, *errors: dict[str, Any]) -> web.Response:
        return self.error(422, "Validation Failed", errors=list(errors))

    def _check(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if auth not in (f"Bearer {TOKEN}", f"token {TOKEN}"):
            return self.error(401, "Bad credentials")
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version != API_VERSION:
            return self.error(400, f"API version {version!r} is not supported.")
        if self.strict_headers and (
            request.headers.get("Accept") != "application/vnd.github+json" or version is None
        ):
            return self.error(400, "the fake requires Accept and X-GitHub-Api-Version")
        if f"{request.match_info['owner']}/{request.match_info['repo']}" != REPO:
            return self.error(404, "Not Found")
        if not self.issues_enabled:
            return self.error(410, "Issues are disabled for this repo")
        return None

    async def create(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._check(request)) is not None:
            return denied
        if self.quota is not None and self.created >= self.quota:
            answer = self.error(403, self.rate_limit_body(None)["message"])
            answer.headers["retry-after"] = "60"
            return answer
        if self._scripted:
            status, scripted = self._scripted.pop(0)
            return web.json_response(scripted, status=status)
        body = json_body(await request.read())
        if not isinstance(body, dict):
            return self.error(400, "Problems parsing JSON")
        title = body.get("title")
        if title is None or title == "":
            return self.invalid({"resource": "Issue", "code": "missing_field", "field": "title"})
        if not isinstance(title, str | int):
            return self.invalid({"resource": "Issue", "code": "invalid", "field": "title"})
        if len(str(title)) > TITLE_MAX:
            return self.invalid(
                {
                    "resource": "Issue",
                    "code": "custom",
                    "field": "title",
                    "message": f"title is too long (maximum is {TITLE_MAX} characters)",
                }
            )
        text = body.get("body")
        if text is not None and (not isinstance(text, str) or len(text) > BODY_MAX):
            return self.invalid(
                {
                    "resource": "Issue",
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {BODY_MAX} characters)",
                }
            )
        labels = body.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            return self.invalid({"resource": "Issue", "code": "invalid", "field": "labels"})
        for label in labels:
            if not label.strip() or len(label) > LABEL_MAX:
                return self.invalid(
                    {"resource": "Label", "code": "invalid", "field": "name", "value": label}
                )
        assignees = body.get("assignees", [])
        if not isinstance(assignees, list):
            return self.invalid({"resource": "Issue", "code": "invalid", "field": "assignees"})
        for login in assignees:
            if self.push_access and login not in COLLABORATORS:
                return self.invalid(
                    {"resource": "Issue", "code": "invalid", "field": "assignees", "value": login}
                )
        issue = self._store({**body, "title": str(title)})
        self.created += 1
        if answer_lost(self._lose, request):
            return self.error(502, "Server Error")
        return web.json_response(issue, status=201)

    async def list(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        q = request.query
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            return self.invalid({"resource": "Issue", "code": "invalid", "field": "state"})
        wanted = {x for x in q.get("labels", "").split(",") if x}
        try:
            per_page = min(int(q.get("per_page", "30")), 100)
        except ValueError:
            return self.error(400, "per_page is not a number")
        found = [
            issue
            for issue in self.issues.values()
            if (state == "all" or issue["state"] == state)
            and wanted <= {label["name"] for label in issue["labels"]}
        ]
        found.sort(key=lambda i: i["number"], reverse=q.get("direction", "desc") == "desc")
        return web.json_response(found[:per_page])
