"""The wheel as the image runs it, without Docker: built from the source tree, installed into a
fresh virtualenv, ``incident-bridge serve`` started from an EMPTY working directory as UID 10001
with its database in a directory that user owns. The bundled rules and templates must come from
the installed package (``bridge/_embedded/``), never from a source tree.

The fresh virtualenv (no system site-packages) lives in a temporary folder UID 10001 can
traverse, and holds everything it runs: the wheel, installed by pip, and the wheel's dependency
closure (its ``Requires-Dist``, recursively, markers evaluated), copied file by file from the
test virtualenv's installed distributions at the versions the tests run with, so the test needs
no network. Nothing in it points back into the checkout: a checkout under a folder UID 10001
cannot traverse (a clone under /root, or in a 0700 temporary folder) works the same. Needs root
to switch to UID 10001: skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.integration.procs import free_port, http, in_ci, wait_for

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "alertmanager-0.25" / "firing-group-bearer.json"
UID = 10001
TOKEN = "wheel-test-webhook-token-0123456789"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: hatchling from the test extras, no download.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
        ],
        check=True,
        timeout=120,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    (found,) = out.glob("incident_bridge-*.whl")
    return found


def test_the_wheel_carries_the_rules_and_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for source_dir, packaged in (
        ("rules", "bridge/_embedded/rules"),
        ("templates", "bridge/_embedded/templates"),
    ):
        files = [
            p
            for p in (REPO / source_dir).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
        assert files
        for path in files:
            assert f"{packaged}/{path.relative_to(REPO / source_dir).as_posix()}" in names, path


@pytest.fixture
def root() -> Iterator[Path]:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("switching to UID 10001 needs root; CI=true, so this test must run")
        pytest.skip("switching to UID 10001 needs root")
    # Not under pytest's tmp_path: its parents are 0700 root, which UID 10001 cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="incident-bridge-wheel-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _interpreter() -> str:
    """A Python of this version that UID 10001 can run: this one when its home is readable,
    else the system's (pyenv's under /root is not)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        str(Path(getattr(sys, "_base_executable", sys.executable)).resolve()),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    for candidate in candidates:
        if not Path(candidate).exists():
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, encodings, venv; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                user=UID,
                group=UID,
                extra_groups=[],
                cwd="/",
            )
        except PermissionError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    message = f"no Python {version} that UID {UID} can run (tried {candidates})"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _install(wheel: Path, root: Path) -> Path:
    venv = root / "venv"
    subprocess.run(
        [_interpreter(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    )
    for dist in _dependencies(wheel):
        _copy_distribution(dist, site)
    return venv


def _dependencies(wheel: Path) -> list[metadata.Distribution]:
    """The distributions the wheel needs to run, as the test virtualenv has them installed."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(archive.read(name).decode())
    todo = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    found: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        # No extras are asked for: a requirement only an extra brings (extra == "...") is out.
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(req.name)
        if key in found:
            continue
        dist = metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), (req, dist.version)
        found[key] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return list(found.values())


def _copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    """``dist``'s files (its RECORD) into ``site``, as pip would have installed them."""
    files = dist.files or []
    assert files, f"{dist.metadata['Name']} lists no files"
    for file in files:
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue  # console scripts outside site-packages; bytecode is made again
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _as_uid(*paths: Path) -> None:
    for path in paths:
        os.chown(path, UID, UID)


def _uid_of(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[1:]
    raise AssertionError("no Uid line")


def test_the_installed_wheel_serves_from_an_empty_directory_as_uid_10001(
    wheel: Path, root: Path
) -> None:
    venv = _install(wheel, root)
    empty = root / "cwd"
    data = root / "data"
    for path in (empty, data):
        path.mkdir(mode=0o700)
    token_file = root / "webhook-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    _as_uid(empty, data, token_file)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(empty),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "INCIDENT_BRIDGE_DB": str(data / "incident-bridge.db"),
    }
    as_uid = {"user": UID, "group": UID, "extra_groups": [], "cwd": empty, "env": env}

    # Everything the service imports is inside the virtualenv: nothing points back into the
    # checkout, whose parents UID 10001 may not be able to traverse.
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, aiohttp, pydantic, pydantic_core, jinja2, sqlite_utils, bridge; "
            "print('\\n'.join(m.__file__ for m in (aiohttp, pydantic, pydantic_core, jinja2, "
            "sqlite_utils, bridge))); print('\\n'.join(p for p in sys.path if p))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **as_uid,
    )
    assert where.returncode == 0, where.stderr
    lines = where.stdout.splitlines()
    modules, search_path = lines[:6], lines[6:]
    for module in modules:
        assert Path(module).resolve().is_relative_to(venv.resolve()), module
    for entry in search_path:  # the venv's and the interpreter's own, never the checkout's
        resolved = Path(entry).resolve()
        assert not resolved.is_relative_to(REPO) and not resolved.is_relative_to(
            Path(sys.prefix).resolve()
        ), entry

    # As in the image: a non-loopback listen without webhook credentials is refused at start.
    refused = subprocess.run(
        [str(venv / "bin" / "incident-bridge"), "serve", "--listen", "0.0.0.0:9096"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **as_uid,
    )
    assert refused.returncode != 0
    assert "refusing to listen on 0.0.0.0:9096 without webhook credentials" in refused.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, log = root / "serve.out", root / "serve.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                str(venv / "bin" / "incident-bridge"),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--webhook-token-file",
                str(token_file),
                "--log-format",
                "json",
            ],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            **as_uid,
        )
    try:
        wait_for(
            f"the bridge on {url} (log: {log})",
            lambda: proc.poll() is None and http("GET", url + "/-/ready", timeout=2).status == 200,
            timeout=30,
        )
        assert http("GET", url + "/-/healthy").status == 200
        assert _uid_of(proc.pid) == [str(UID)] * 4

        body = json.dumps(json.loads(FIXTURE.read_text())["body"]).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        posted = http("POST", url + "/api/v1/alerts", body, headers)
        assert posted.status == 200, posted.body
        (opened,) = posted.json()["incidents"]
        incident = http("GET", url + f"/api/v1/incidents/{opened['id']}").json()
        assert incident["status"] == "triggered"
        # The title comes from the bundled rules (rules/payments.yaml), not the built-in policy.
        assert incident["title"] == "5xx ratio above 5% (checkout)", incident["title"]

        site = Path(
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", "import bridge; print(bridge.__file__)"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
                cwd=empty,
                env=env,
            ).stdout.strip()
        ).parent
        assert site.is_relative_to(venv), site
        rules = http("GET", url + "/api/v1/rules").json()
        assert rules["files"], rules
        assert all(Path(f).is_relative_to(site / "_embedded" / "rules") for f in rules["files"])
        # The console target's message is rendered from the bundled templates.
        wait_for("the console notification", lambda: b"5xx ratio above 5%" in out.read_bytes(), 15)
        assert not list(empty.iterdir()), "serve wrote into its working directory"
        assert sorted(p.name for p in data.iterdir()) >= ["incident-bridge.db"]
        assert (data / "incident-bridge.db").stat().st_uid == UID
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-2000:]
