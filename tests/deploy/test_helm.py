"""The Helm chart helm/incident-bridge, checked with the real tools and without a cluster.

- ``helm lint --strict`` with each ``ci/*-values.yaml``;
- ``helm template`` of each (with ``--api-versions monitoring.coreos.com/v1``) piped to
  ``kubernetes-validate --strict`` (offline schemas of the core kinds). kubernetes-validate has
  no schema for the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule): it warns and
  passes them, so their structure is checked here instead;
- ``promtool check rules`` on the rendered PrometheusRule's ``spec``;
- replicaCount 2 refused on SQLite (by the schema, and by the templates' ``fail`` when the
  schema is skipped), allowed on PostgreSQL with the tokens given (a PodDisruptionBudget, a
  spread over nodes, a rolling update that keeps every pod until its successor is ready),
  the stop's settings and a grace period that covers them, tokens only in the Secret, the
  rules' checksum rolling the pod, NOTES.txt's receiver.

helm comes from ``.ci/get-helm`` (``.cache/helm/helm``) or PATH: without it these tests skip on a
developer machine and fail under CI=true.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import bridge
from tests.integration.procs import free_port, http, in_ci, require_binary, terminate, wait_for

ROOT = Path(__file__).parent.parent.parent
CHART = ROOT / "helm" / "incident-bridge"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CRD_API = "monitoring.coreos.com/v1"
RELEASE = "bridge"
NAMESPACE = "incidents"
FULLNAME = f"{RELEASE}-incident-bridge"
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Ingress",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
REPLICA_MESSAGE = "only one process may open"


def _missing(what: str) -> None:
    if in_ci():
        pytest.fail(f"{what}; CI=true, so this test must run", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def helm() -> str:
    cached = ROOT / ".cache" / "helm" / "helm"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("helm")
    if found:
        return found
    _missing("helm is not installed: run `bash .ci/get-helm` (puts it at .cache/helm/helm)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def kubernetes_validate() -> str:
    beside = Path(sys.executable).parent / "kubernetes-validate"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubernetes-validate")
    if found:
        return found
    _missing("kubernetes-validate is not installed (pip install -e '.[test]')")
    raise AssertionError("unreachable")


def run(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def render(
    helm: str,
    *options: str,
    chart: Path = CHART,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = run(
        [
            helm,
            "template",
            RELEASE,
            str(chart),
            "--namespace",
            NAMESPACE,
            "--api-versions",
            CRD_API,
            *options,
        ]
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def documents(manifest: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(manifest) if d]


def objects(helm: str, *options: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents(render(helm, *options).stdout)}


def deployment(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objs[("Deployment", FULLNAME)]


def container(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    containers = deployment(objs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objs)["env"]}


def values_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


def test_the_ci_values_cover_each_setup() -> None:
    assert {values_id(p) for p in CI_VALUES} >= {
        "default",
        "persistence-existingclaim",
        "ingress",
        "monitoring",
        "existingsecret",
        "postgresql",
        "replicas",
    }


def test_app_version_is_the_package_version() -> None:
    chart = YAML(typ="safe").load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert match
    assert chart["appVersion"] == bridge.__version__ == match.group(1)


@pytest.mark.parametrize("values", CI_VALUES, ids=values_id)
def test_lint_strict(helm: str, values: Path) -> None:
    result = run([helm, "lint", "--strict", str(CHART), "--values", str(values)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def check_crd(doc: dict[str, Any], service: dict[str, Any]) -> None:
    """What kubernetes-validate cannot: the operator CRDs' required structure."""
    assert doc["apiVersion"] == CRD_API
    meta = doc["metadata"]
    assert meta["name"] == FULLNAME
    assert meta["namespace"] == NAMESPACE
    assert all(isinstance(v, str) for v in meta["labels"].values())
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec = doc["spec"]
    if doc["kind"] == "ServiceMonitor":
        assert set(spec) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}
        # it selects this release's Service, and scrapes its named port
        assert spec["selector"]["matchLabels"] == service["spec"]["selector"]
        assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        # job="incident-bridge", which the rules' expressions expect
        assert service["metadata"]["labels"][spec["jobLabel"]] == "incident-bridge"
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    else:
        assert set(spec) == {"groups"}
        assert spec["groups"]
        for group in spec["groups"]:
            assert isinstance(group["name"], str)
            assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
            for rule in group["rules"]:
                assert ("record" in rule) != ("alert" in rule)
                assert isinstance(rule["expr"], str)
                assert set(rule) <= {"record", "alert", "expr", "for", "labels", "annotations"}


@pytest.mark.parametrize("values", CI_VALUES, ids=values_id)
def test_template_is_valid_kubernetes(helm: str, kubernetes_validate: str, values: Path) -> None:
    manifest = render(helm, "--values", str(values)).stdout
    # kubernetes-validate's newest schemas, and the oldest Kubernetes the chart allows
    oldest = YAML(typ="safe").load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    oldest = re.sub(r"^>=\s*|-0$", "", oldest)
    assert re.fullmatch(r"\d+\.\d+\.\d+", oldest), oldest
    for version in ([], ["--kubernetes-version", oldest]):
        result = run([kubernetes_validate, "--strict", *version, "-"], stdin=manifest)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "ERROR" not in output, output
    docs = documents(manifest)
    kinds = [d["kind"] for d in docs]
    assert set(kinds) <= CORE_KINDS | CRD_KINDS, kinds
    # every core object was validated against a schema, not passed for want of one
    for doc in docs:
        name = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        if doc["kind"] in CORE_KINDS:
            assert f"passed for resource {name}" in output, output
    services = [d for d in docs if d["kind"] == "Service"]
    assert len(services) == 1
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            check_crd(doc, services[0])
    assert kinds.count("Deployment") == 1


def test_the_defaults_as_sres_expect(helm: str) -> None:
    objs = objects(helm)
    deploy = deployment(objs)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    c = container(objs)
    assert c["image"] == f"incident-bridge:{bridge.__version__}"
    assert (c["command"], c["args"]) == (["incident-bridge"], ["serve"])
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["ports"] == [
        {"name": "http", "containerPort": 9096, "protocol": "TCP"},
        {"name": "webhooks", "containerPort": 9097, "protocol": "TCP"},  # Alertmanager's own
    ]
    assert env(objs)["INCIDENT_BRIDGE_WEBHOOK_LISTEN"]["value"] == "0.0.0.0:9097"
    service = objs[("Service", FULLNAME)]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (9096, "http"), "webhooks": (9097, "webhooks")}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/data"]]["persistentVolumeClaim"] == {"claimName": FULLNAME}
    assert ("PersistentVolumeClaim", FULLNAME) in objs
    variables = env(objs)
    assert variables["INCIDENT_BRIDGE_LISTEN"]["value"] == "0.0.0.0:9096"
    assert variables["INCIDENT_BRIDGE_DB"]["value"] == "/data/incident-bridge.db"
    # no rules given: no ConfigMap, the image's bundled rules
    assert "INCIDENT_BRIDGE_RULES" not in variables
    assert not any(kind == "ConfigMap" for kind, _ in objs)
    service = objs[("Service", FULLNAME)]
    assert service["spec"]["ports"][0]["port"] == 9096


def test_extra_args_follow_serve(helm: str) -> None:
    c = container(objects(helm, "--set", "extraArgs={--log-level,debug}"))
    assert c["args"] == ["serve", "--log-level", "debug"]


def test_existing_claim_and_no_persistence(helm: str) -> None:
    objs = objects(helm, "--set", "persistence.existingClaim=mine")
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objs)
    volumes = {v["name"]: v for v in deployment(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "mine"}
    objs = objects(helm, "--set", "persistence.enabled=false")
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objs)
    volumes = {v["name"]: v for v in deployment(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    # an emptyDir is world-writable (0777): the database goes in a 0700 folder the service makes
    [container] = deployment(objs)["spec"]["template"]["spec"]["containers"]
    variables = {v["name"]: v for v in container["env"]}
    assert variables["INCIDENT_BRIDGE_DB"]["value"] == "/data/db/incident-bridge.db"


def test_every_variable_the_chart_sets_is_documented(helm: str) -> None:
    documented = set(
        re.findall(r"INCIDENT_BRIDGE_[A-Z_]+", (ROOT / "docs" / "configuration.md").read_text())
    )
    values = CHART / "ci" / "ingress-values.yaml"
    postgresql = CHART / "ci" / "postgresql-values.yaml"
    for objs in (
        objects(helm),
        objects(helm, "--values", str(values)),
        objects(helm, "--values", str(postgresql), "--set", "database.passwordKey=password"),
    ):
        # PG*: libpq's own variables (docs/postgresql.md), which the PostgreSQL values set
        ours = {name for name in env(objs) if not name.startswith("PG")}
        assert ours <= documented, ours - documented


def test_more_than_one_replica_is_refused_on_sqlite_only(helm: str) -> None:
    result = render(helm, "--set", "replicaCount=2", check=False)
    assert result.returncode != 0
    assert "replicaCount: Must be less than or equal to 1" in result.stderr, result.stderr
    # the templates refuse it too, with the reason, also when the schema is not checked
    result = render(helm, "--set", "replicaCount=2", "--skip-schema-validation", check=False)
    assert result.returncode != 0
    assert "replicaCount is 2" in result.stderr, result.stderr
    assert REPLICA_MESSAGE in result.stderr, result.stderr
    # 0 stops it
    assert deployment(objects(helm, "--set", "replicaCount=0"))["spec"]["replicas"] == 0
    # PostgreSQL: allowed (the tokens given), by the schema and the templates alike
    for skip in ((), ("--skip-schema-validation",)):
        objs = objects(helm, "--values", str(REPLICAS_VALUES), "--set", "replicaCount=2", *skip)
        assert deployment(objs)["spec"]["replicas"] == 2


def test_tokens_are_in_the_secret_only(helm: str) -> None:
    webhook, api = "webhook-token-0123456789abcdef", "api-token-fedcba9876543210"
    objs = objects(
        helm,
        "--values",
        str(CHART / "ci" / "monitoring-values.yaml"),
        "--values",
        str(CHART / "ci" / "ingress-values.yaml"),
        "--set",
        f"auth.webhookToken={webhook},auth.apiToken={api}",
    )
    secret = objs[("Secret", FULLNAME)]
    assert base64.b64decode(secret["data"]["webhook-token"]).decode() == webhook
    assert base64.b64decode(secret["data"]["api-token"]).decode() == api
    config_maps = [d for (kind, _), d in objs.items() if kind == "ConfigMap"]
    assert {d["metadata"]["name"] for d in config_maps} == {
        f"{FULLNAME}-rules",
        f"{FULLNAME}-dashboard",
    }
    for doc in objs.values():
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for token in (webhook, api):
            assert token not in text, doc["kind"]
            assert base64.b64encode(token.encode()).decode() not in text, doc["kind"]
    variables = env(objs)
    for name, key in (
        ("INCIDENT_BRIDGE_WEBHOOK_TOKEN", "webhook-token"),
        ("INCIDENT_BRIDGE_API_TOKEN", "api-token"),
    ):
        assert "value" not in variables[name]
        ref = variables[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (FULLNAME, key)


def test_no_token_in_config(helm: str) -> None:
    """config becomes plain env values: the schema refuses a name that looks like a secret."""
    for name in ("API_TOKEN", "WEBHOOK_BASIC_PASSWORD"):
        result = render(helm, "--set", f"config.{name}=x", check=False)
        assert result.returncode != 0
        assert f'Property name of "{name}" does not match' in result.stderr, result.stderr
    variables = env(objects(helm, "--set", "config.LOG_LEVEL=debug"))
    assert variables["INCIDENT_BRIDGE_LOG_LEVEL"]["value"] == "debug"


def test_generated_tokens_when_none_given(helm: str) -> None:
    secret = objects(helm)[("Secret", FULLNAME)]
    for key in ("webhook-token", "api-token"):
        assert len(base64.b64decode(secret["data"][key])) == 48


def test_existing_secret(helm: str) -> None:
    objs = objects(helm, "--values", str(CHART / "ci" / "existingsecret-values.yaml"))
    assert not any(kind == "Secret" for kind, _ in objs)
    variables = env(objs)
    webhook = variables["INCIDENT_BRIDGE_WEBHOOK_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert webhook == {"name": "incident-bridge-tokens", "key": "webhook"}
    api = variables["INCIDENT_BRIDGE_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert api == {"name": "incident-bridge-tokens", "key": "api", "optional": True}
    result = render(
        helm,
        "--values",
        str(CHART / "ci" / "existingsecret-values.yaml"),
        "--set",
        "auth.webhookToken=x",
        check=False,
    )
    assert result.returncode != 0
    assert "both set" in result.stderr


def rules_checksum(helm: str, *options: str) -> str | None:
    objs = objects(helm, *options)
    annotations = deployment(objs)["spec"]["template"]["metadata"]["annotations"]
    checksum = annotations.get("checksum/rules")
    return None if checksum is None else str(checksum)


def test_a_rules_change_rolls_the_pod(helm: str, tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("rules:\n  inline:\n    00-targets.yaml:\n      targets: {a: {type: console}}\n")
    two = tmp_path / "two.yaml"
    two.write_text("rules:\n  inline:\n    00-targets.yaml:\n      targets: {b: {type: console}}\n")
    first = rules_checksum(helm, "--values", str(one))
    assert first is not None and re.fullmatch(r"[0-9a-f]{64}", first)
    assert rules_checksum(helm, "--values", str(one)) == first
    assert rules_checksum(helm, "--values", str(two)) not in (None, first)
    assert rules_checksum(helm) is None  # no rules: no ConfigMap, nothing to roll on

    objs = objects(helm, "--values", str(one))
    rules = objs[("ConfigMap", f"{FULLNAME}-rules")]
    assert YAML(typ="safe").load(rules["data"]["00-targets.yaml"]) == {
        "targets": {"a": {"type": "console"}}
    }
    assert env(objs)["INCIDENT_BRIDGE_RULES"]["value"] == "/etc/incident-bridge/rules"
    mount = next(m for m in container(objs)["volumeMounts"] if m["name"] == "rules")
    assert mount == {"name": "rules", "mountPath": "/etc/incident-bridge/rules", "readOnly": True}


def test_rules_from_the_chart_files(helm: str, tmp_path: Path) -> None:
    chart = tmp_path / "incident-bridge"
    shutil.copytree(CHART, chart)
    (chart / "files" / "rules").mkdir(parents=True)
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        shutil.copy(path, chart / "files" / "rules")
    objs = {
        (d["kind"], d["metadata"]["name"]): d for d in documents(render(helm, chart=chart).stdout)
    }
    data = objs[("ConfigMap", f"{FULLNAME}-rules")]["data"]
    assert data == {p.name: p.read_text() for p in (ROOT / "rules").glob("*.yaml")}
    # an inline file wins over the chart's file of the same name
    inline = tmp_path / "inline.yaml"
    inline.write_text("rules:\n  inline:\n    20-root.yaml: 'route: {}'\n")
    result = render(helm, "--values", str(inline), chart=chart)
    objs = {(d["kind"], d["metadata"]["name"]): d for d in documents(result.stdout)}
    assert objs[("ConfigMap", f"{FULLNAME}-rules")]["data"]["20-root.yaml"] == "route: {}"


def test_monitoring_objects(helm: str, tmp_path: Path) -> None:
    promtool = require_binary("/usr/bin/promtool")
    objs = objects(helm, "--values", str(CHART / "ci" / "monitoring-values.yaml"))
    rule = objs[("PrometheusRule", FULLNAME)]
    source = YAML(typ="safe").load((CHART / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"] == {"groups": source["groups"]}
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(rule["spec"]))
    result = run([promtool, "check", "rules", str(spec)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in source['groups'])} rules found" in (
        result.stdout
    )

    dashboard = objs[("ConfigMap", f"{FULLNAME}-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Incidents"}
    shipped = (CHART / "dashboards" / "incident-bridge.json").read_text()
    assert json.loads(dashboard["data"]["incident-bridge.json"]) == json.loads(shipped)

    monitor = objs[("ServiceMonitor", FULLNAME)]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the toggles are off by default
    assert not ({kind for kind, _ in objects(helm)} & {"ServiceMonitor", "PrometheusRule"})


def notes(helm: str, tmp_path: Path, *options: str) -> str:
    """NOTES.txt as `helm install` prints it (which needs a cluster even with --dry-run)."""
    chart = tmp_path / "incident-bridge"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'kind: Notes\nnotes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    result = render(helm, "--show-only", "templates/zz-notes.yaml", *options, chart=chart)
    return str(YAML(typ="safe").load(result.stdout)["notes"])


def test_notes_give_the_alertmanager_receiver(helm: str, tmp_path: Path) -> None:
    text = notes(helm, tmp_path)
    url = f"http://{FULLNAME}.{NAMESPACE}.svc:9097/api/v1/alerts"  # service.webhookPort
    assert f"- url: {url}" in text
    # the snippet is the example's receiver with this release's URL and a credentials file
    snippet = textwrap.dedent(text.split("\n\n")[2])
    config = YAML(typ="safe").load(snippet)
    amtool = require_binary("/usr/bin/amtool")
    (tmp_path / "alertmanager.yml").write_text(snippet)
    result = run([amtool, "check-config", str(tmp_path / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    example = YAML(typ="safe").load((ROOT / "examples" / "alertmanager.yml").read_text())
    (ours,) = config["receivers"][0]["webhook_configs"]
    (theirs,) = example["receivers"][0]["webhook_configs"]
    assert ours["url"] == url
    assert set(ours) == set(theirs)
    assert ours["send_resolved"] is True
    assert ours["http_config"]["authorization"]["type"] == "Bearer"
    assert ours["http_config"]["authorization"]["credentials_file"].endswith("/webhook-token")
    for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
        assert config["route"][key] == example["route"][key]
    assert f"kubectl get secret --namespace {NAMESPACE} {FULLNAME}" in text
    text = notes(helm, tmp_path / "2", "--values", str(CHART / "ci" / "existingsecret-values.yaml"))
    assert "secrets/incident-bridge-tokens/webhook" in text


def test_the_values_example_in_deploy_md(
    helm: str, kubernetes_validate: str, tmp_path: Path
) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    match = re.search(r"```yaml\n# my-values.yaml\n(.*?)```", text, re.DOTALL)
    assert match, "docs/deploy.md has no my-values.yaml example"
    values = tmp_path / "my-values.yaml"
    values.write_text(match.group(1))
    result = run([helm, "lint", "--strict", str(CHART), "--values", str(values)])
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = render(helm, "--values", str(values)).stdout
    result = run([kubernetes_validate, "--strict", "-"], stdin=manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in documents(manifest)}
    assert {"ServiceMonitor", "PrometheusRule", "Ingress"} <= kinds
    assert "Secret" not in kinds  # existingSecret


def test_the_packaged_chart_renders_the_same(helm: str, tmp_path: Path) -> None:
    """`helm package` keeps what the templates read (.helmignore drops only ci/ and the tests)."""
    result = run([helm, "package", str(CHART), "--destination", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("incident-bridge-*.tgz")
    values = ("--values", str(CHART / "ci" / "monitoring-values.yaml"))
    secretless = ("--set", "auth.webhookToken=a-webhook-token,auth.apiToken=an-api-token")
    packaged = render(helm, *values, *secretless, chart=package).stdout
    assert packaged == render(helm, *values, *secretless).stdout


# PostgreSQL (docs/postgresql.md): database.url or database.existingSecret selects it.
PG_VALUES = CHART / "ci" / "postgresql-values.yaml"
REPLICAS_VALUES = CHART / "ci" / "replicas-values.yaml"
CNPG_EXAMPLE = ROOT / "examples" / "cloudnativepg-cluster.yaml"
PG_URL = "postgresql://bridge@pg-rw.db:5432/bridge?sslmode=verify-full"


def volumes(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in deployment(objs)["spec"]["template"]["spec"]["volumes"]}


def test_sqlite_needs_nothing_of_the_database_block(helm: str) -> None:
    """The default renders as before the PostgreSQL values existed: a claim, the file's path,
    none of PostgreSQL's variables."""
    objs = objects(helm)
    variables = env(objs)
    assert variables["INCIDENT_BRIDGE_DB"] == {
        "name": "INCIDENT_BRIDGE_DB",
        "value": "/data/incident-bridge.db",
    }
    for name in (
        "INCIDENT_BRIDGE_DB_PASSWORD",
        "INCIDENT_BRIDGE_DATA_DIR",
        "INCIDENT_BRIDGE_KB_DATABASE_ONLY",
    ):
        assert name not in variables
    assert ("PersistentVolumeClaim", FULLNAME) in objs
    # an empty database block is SQLite, the same manifests (tokens fixed: else generated)
    tokens = ("--set", "auth.webhookToken=a-webhook-token,auth.apiToken=an-api-token")
    empty = ("--set", "database.url=,database.existingSecret=")
    assert render(helm, *tokens, *empty).stdout == render(helm, *tokens).stdout


def test_postgresql_from_an_existing_secret(helm: str) -> None:
    objs = objects(helm, "--values", str(PG_VALUES))
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objs)
    variables = env(objs)
    assert variables["INCIDENT_BRIDGE_DB"] == {
        "name": "INCIDENT_BRIDGE_DB",
        "valueFrom": {"secretKeyRef": {"name": "incident-bridge-pg-app", "key": "uri"}},
    }
    assert "INCIDENT_BRIDGE_DB_PASSWORD" not in variables  # the uri holds it
    # the files beside the store: an emptyDir at /data, in a folder the service makes 0700
    assert volumes(objs)["data"] == {"name": "data", "emptyDir": {}}
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert variables["INCIDENT_BRIDGE_DATA_DIR"]["value"] == "/data/files"
    # a knowledge base folder in the emptyDir would be a new repository at every start
    assert variables["INCIDENT_BRIDGE_KB_DATABASE_ONLY"]["value"] == "true"
    # the API token from the chart's Secret, never generated into the emptyDir
    ref = variables["INCIDENT_BRIDGE_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": FULLNAME, "key": "api-token"}
    # nothing held by one pod: a new one is ready before an old one stops (docs/ha.md)
    assert deployment(objs)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    # the server's certificate checked against the cluster's CA, its key not mounted
    assert variables["PGSSLMODE"]["value"] == "verify-full"
    ca = volumes(objs)["postgresql-ca"]["secret"]
    assert ca == {
        "secretName": "incident-bridge-pg-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    ca_mount = next(m for m in container(objs)["volumeMounts"] if m["name"] == "postgresql-ca")
    assert variables["PGSSLROOTCERT"]["value"] == ca_mount["mountPath"] + "/ca.crt"


def test_postgresql_from_the_url_value(helm: str) -> None:
    objs = objects(
        helm,
        "--set",
        f"database.url={PG_URL}",
        "--set",
        "database.existingSecret=pg-password,database.passwordKey=password",
        # the claim is SQLite's: not used, not made
        "--set",
        "persistence.existingClaim=mine",
    )
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objs)
    assert volumes(objs)["data"] == {"name": "data", "emptyDir": {}}
    variables = env(objs)
    assert variables["INCIDENT_BRIDGE_DB"] == {"name": "INCIDENT_BRIDGE_DB", "value": PG_URL}
    assert variables["INCIDENT_BRIDGE_DB_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "pg-password", "key": "password"}
    }


def test_postgresql_with_an_existing_token_secret_requires_the_api_token(helm: str) -> None:
    """With SQLite a missing API token key lets the service generate one on the volume; on
    PostgreSQL that file would be in the emptyDir, a new token at every start: the key is
    required (the pod does not start without it)."""
    existing = ("--values", str(CHART / "ci" / "existingsecret-values.yaml"))
    api = env(objects(helm, *existing))["INCIDENT_BRIDGE_API_TOKEN"]["valueFrom"]
    assert api["secretKeyRef"]["optional"] is True
    api = env(objects(helm, *existing, "--values", str(PG_VALUES)))["INCIDENT_BRIDGE_API_TOKEN"]
    assert api["valueFrom"]["secretKeyRef"] == {"name": "incident-bridge-tokens", "key": "api"}


def test_postgresql_leaves_the_knowledge_base_to_config(helm: str) -> None:
    variables = env(objects(helm, "--values", str(PG_VALUES)))
    assert variables["INCIDENT_BRIDGE_KB_DATABASE_ONLY"]["value"] == "true"
    for option in ("config.KB_DIR=/kb", "config.KB_DATABASE_ONLY=true"):
        variables = env(objects(helm, "--values", str(PG_VALUES), "--set", option))
        assert [n for n in variables if n.startswith("INCIDENT_BRIDGE_KB_")] == [
            "INCIDENT_BRIDGE_" + option.split("=")[0].removeprefix("config.")
        ]
    extra = "extraEnv[0].name=INCIDENT_BRIDGE_KB_DIR,extraEnv[0].value=/kb"
    variables = env(objects(helm, "--values", str(PG_VALUES), "--set", extra))
    assert "INCIDENT_BRIDGE_KB_DATABASE_ONLY" not in variables


@pytest.mark.parametrize(
    ("options", "schema", "template"),
    [
        (
            ["--set", "database.url=postgresql://bridge:hunter2@pg-rw/bridge"],
            "database.url",
            "database.url holds a password",
        ),
        (
            ["--set", "database.url=postgres://bridge@pg-rw/bridge?password=hunter2"],
            "database.url",
            "database.url holds a password",
        ),
        (
            ["--set", "database.url=/data/incident-bridge.db"],
            "database.url",
            "database.url must start with postgresql://",
        ),
        (
            ["--set", "database.url=" + PG_URL, "--set", "database.passwordKey=password"],
            None,
            "database.passwordKey is set without database.existingSecret",
        ),
        (
            ["--set", "database.url=" + PG_URL, "--set", "database.existingSecret=pg"],
            None,
            "the Secret would not be used",
        ),
        (
            ["--set", "database.existingSecret=pg,database.urlKey="],
            None,
            "database.urlKey is empty",
        ),
        (
            ["--values", str(PG_VALUES), "--set", "replicaCount=2"],
            None,
            "replicaCount is 2: every replica must take the same API token",
        ),
    ],
    ids=[
        "password-in-url",
        "password-in-query",
        "not-postgresql",
        "password-key-alone",
        "secret-unused",
        "no-url-key",
        "replicas",
    ],
)
def test_postgresql_values_refused(
    helm: str, options: list[str], schema: str | None, template: str
) -> None:
    """Refused by the schema when it can say so, and by the templates with the reason (also
    when the schema is skipped); a password never echoed."""
    result = render(helm, *options, check=False)
    assert result.returncode != 0
    assert (schema or template) in result.stderr, result.stderr
    result = render(helm, *options, "--skip-schema-validation", check=False)
    assert result.returncode != 0
    assert template in result.stderr, result.stderr
    assert "hunter2" not in result.stderr


def test_notes_name_the_postgresql_store(helm: str, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, "--values", str(PG_VALUES))
    assert "the store is in PostgreSQL" in text
    assert "key uri of the Secret incident-bridge-pg-app" in text
    assert "SQLite" not in text
    assert "SQLite" in notes(helm, tmp_path / "2")


def test_the_cloudnativepg_example(helm: str) -> None:
    """kubernetes-validate has no schema for CloudNativePG's Cluster (a CRD) offline: its shape
    is checked here, and the chart's values read the Secrets the operator makes for it."""
    docs = documents(CNPG_EXAMPLE.read_text())
    assert len(docs) == 1
    (cluster,) = docs
    assert set(cluster) == {"apiVersion", "kind", "metadata", "spec"}
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    name = cluster["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["bootstrap"] == {"initdb": {"database": "bridge", "owner": "bridge"}}
    assert re.fullmatch(r"\d+[MG]i", spec["storage"]["size"])
    assert spec["postgresql"]["synchronous"] == {"method": "any", "number": 1}
    assert "enableSuperuserAccess" not in spec or spec["enableSuperuserAccess"] is False
    values = YAML(typ="safe").load(PG_VALUES.read_text())
    assert values["database"] == {"existingSecret": f"{name}-app", "urlKey": "uri"}
    secrets = {v["secret"]["secretName"] for v in values["extraVolumes"]}
    assert secrets == {f"{name}-ca"}


def yaml_blocks(text: str, first_line: str) -> list[str]:
    return [
        b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if b.startswith(first_line)
    ]


def test_postgresql_md_shows_the_files_as_they_are(
    helm: str, kubernetes_validate: str, tmp_path: Path
) -> None:
    """docs/postgresql.md's Cluster and chart values are the example file and the CI values,
    and its other values blocks render and validate."""
    text = (ROOT / "docs" / "postgresql.md").read_text()
    load = YAML(typ="safe").load
    (cluster,) = yaml_blocks(text, "apiVersion: postgresql.cnpg.io/v1")
    assert load(cluster) == load(CNPG_EXAMPLE)
    (values,) = yaml_blocks(text, "# pg-values.yaml")
    assert load(values) == load(PG_VALUES)
    # the copy pod of "Moving from SQLite": a valid Pod that mounts the chart's claim
    (pod,) = yaml_blocks(text, "apiVersion: v1\nkind: Pod")
    result = run([kubernetes_validate, "--strict", "-"], stdin=pod)
    assert result.returncode == 0 and "passed for resource pod/" in result.stdout, result.stdout
    claims = [
        v["persistentVolumeClaim"]
        for v in load(pod)["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [{"claimName": "incident-bridge"}]  # `helm install incident-bridge`
    others = yaml_blocks(text, "# values:")
    assert others
    for number, block in enumerate(others):
        path = tmp_path / f"{number}.yaml"
        path.write_text(block)
        manifest = render(helm, "--values", str(path)).stdout
        result = run([kubernetes_validate, "--strict", "-"], stdin=manifest)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "INCIDENT_BRIDGE_DB" in env(
            {(d["kind"], d["metadata"]["name"]): d for d in documents(manifest)}
        )


def pod_environment(
    objs: dict[tuple[str, str], dict[str, Any]],
    secrets: dict[tuple[str, str], str],
    pod_name: str = f"{FULLNAME}-5d8f7c9b4-x2k4p",
) -> dict[str, str]:
    """The container's variables as the kubelet would give them: values as they are, each
    secretKeyRef from the chart's rendered Secret or from ``secrets``, the pod's name for
    its fieldRef."""
    rendered = {
        (name, key): base64.b64decode(value).decode()
        for (kind, name), doc in objs.items()
        if kind == "Secret"
        for key, value in doc["data"].items()
    }
    out = {}
    for entry in container(objs)["env"]:
        if "value" in entry:
            out[entry["name"]] = str(entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            assert entry["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name"}
            out[entry["name"]] = pod_name
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            out[entry["name"]] = {**rendered, **secrets}[(ref["name"], ref["key"])]
    return out


def test_the_postgresql_values_start_the_service(helm: str, pg_url: str, tmp_path: Path) -> None:
    """The variables the chart gives the pod with the CloudNativePG values, with the URL of a
    throwaway PostgreSQL in the Secret's place and a 0777 folder (as an emptyDir) for /data:
    the service starts, keeps its files (if any) in a 0700 folder below it, names itself by
    the pod's name, serves the tokens of the chart's Secret, and at SIGTERM answers /-/ready
    503 for the chart's delay (a second SIGTERM cuts it short) and exits 0. (libpq's PGSSL*
    are left out: the test's server has no TLS.)"""
    objs = objects(helm, "--values", str(PG_VALUES))
    variables = pod_environment(objs, {("incident-bridge-pg-app", "uri"): pg_url})
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    port, hook_port = free_port(), free_port()
    variables["INCIDENT_BRIDGE_LISTEN"] = f"127.0.0.1:{port}"
    variables["INCIDENT_BRIDGE_WEBHOOK_LISTEN"] = f"127.0.0.1:{hook_port}"
    variables["INCIDENT_BRIDGE_DATA_DIR"] = variables["INCIDENT_BRIDGE_DATA_DIR"].replace(
        "/data", str(data), 1
    )
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INCIDENT_BRIDGE_", "PG"))  # the developer's own settings
    }
    environment.update({k: v for k, v in variables.items() if not k.startswith("PGSSL")})
    log = (tmp_path / "bridge.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", *container(objs)["args"]],
        env=environment,
        cwd=data,  # the image's working directory
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        ready = wait_for(
            "/-/ready",
            # an exit ends the wait at once (the probe's refused connection would not)
            lambda: (
                proc.poll() is not None
                or http("GET", f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200
            ),
            timeout=30,
        )
        assert ready and proc.poll() is None, (tmp_path / "bridge.log").read_text()[-3000:]
        files = data / "files"
        if files.exists():
            assert stat.S_IMODE(files.stat().st_mode) == 0o700
        # the session key in the database (one for every replica), the Secret's API token,
        # postmortems in the database: nothing of them in the emptyDir
        assert not (files / "incident-bridge.session-key").exists()
        assert not (files / "incident-bridge.api-token").exists()
        assert not (files / "kb").exists()
        body = http("GET", f"http://127.0.0.1:{port}/-/ready").body.decode()
        assert f"replica {variables['INCIDENT_BRIDGE_REPLICA_ID']}:" in body, body
        fixture = json.loads(
            (
                ROOT / "tests" / "fixtures" / "alertmanager-0.25" / "firing-group-bearer.json"
            ).read_text()
        )
        webhook = http(
            "POST",
            f"http://127.0.0.1:{hook_port}/api/v1/alerts",
            json.dumps(fixture["body"]).encode(),
            {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {variables['INCIDENT_BRIDGE_WEBHOOK_TOKEN']}",
            },
        )
        assert webhook.status == 200, webhook.body
        api = {"Authorization": f"Bearer {variables['INCIDENT_BRIDGE_API_TOKEN']}"}
        listed = http("GET", f"http://127.0.0.1:{port}/api/v1/incidents", headers=api)
        assert listed.status == 200, listed.body
        assert "HighErrorRate" in listed.body.decode()
        # the chart's stop: /-/ready 503 at once, still serving for shutdown.delaySeconds
        assert variables["INCIDENT_BRIDGE_SHUTDOWN_DELAY"] == "5"
        proc.send_signal(signal.SIGTERM)
        wait_for(
            "/-/ready 503",
            lambda: http("GET", f"http://127.0.0.1:{port}/-/ready").status == 503,
            timeout=5,
        )
        assert http("GET", f"http://127.0.0.1:{port}/-/healthy").status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        terminate(proc)
        log.close()


# --- replicas on PostgreSQL (docs/ha.md) and the stop ---------------------------------------


def pod_labels(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = deployment(objs)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_replicas_on_postgresql(helm: str) -> None:
    """Three replicas: a rolling update that stops an old pod only once a new one is ready,
    a budget that keeps one serving through node drains, the pods spread over nodes (still
    scheduled when there are too few), readiness on /-/ready, and a grace period that
    covers the stop."""
    objs = objects(helm, "--values", str(REPLICAS_VALUES))
    deploy = deployment(objs)
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pdb = objs[("PodDisruptionBudget", FULLNAME)]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    # the budget and the spread count this release's pods, and only them
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(objs).items()
    pod = deploy["spec"]["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deploy["spec"]["selector"]["matchLabels"]},
    }
    c = container(objs)
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    variables = env(objs)
    delay = float(variables["INCIDENT_BRIDGE_SHUTDOWN_DELAY"]["value"])
    timeout = float(variables["INCIDENT_BRIDGE_SHUTDOWN_TIMEOUT"]["value"])
    assert delay == 5 and timeout == 10
    # SIGTERM: the delay, the requests in flight, up to 10 s of sends in flight, the store
    assert pod["terminationGracePeriodSeconds"] >= delay + timeout + 15
    # the tokens from the Secret, required (never generated by a pod)
    for name, key in (
        ("INCIDENT_BRIDGE_API_TOKEN", "api"),
        ("INCIDENT_BRIDGE_WEBHOOK_TOKEN", "webhook"),
    ):
        ref = variables[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "incident-bridge-tokens", "key": key}
    assert not any(kind == "Secret" for kind, _ in objs)


def test_pdb_and_spread_tuned_or_off(helm: str) -> None:
    replicas = ("--values", str(REPLICAS_VALUES))
    objs = objects(helm, *replicas, "--set", "podDisruptionBudget.maxUnavailable=50%")
    assert objs[("PodDisruptionBudget", FULLNAME)]["spec"]["maxUnavailable"] == "50%"
    assert "minAvailable" not in objs[("PodDisruptionBudget", FULLNAME)]["spec"]
    objs = objects(
        helm,
        *replicas,
        "--set",
        "podDisruptionBudget.enabled=false,topologySpread.enabled=false",
    )
    assert ("PodDisruptionBudget", FULLNAME) not in objs
    assert "topologySpreadConstraints" not in deployment(objs)["spec"]["template"]["spec"]
    spread = "topologySpread.whenUnsatisfiable=DoNotSchedule,topologySpread.topologyKey=zone"
    objs = objects(helm, *replicas, "--set", spread)
    (got,) = deployment(objs)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert (got["whenUnsatisfiable"], got["topologyKey"]) == ("DoNotSchedule", "zone")
    # a budget no eviction could satisfy would hang every node drain
    result = render(helm, *replicas, "--set", "podDisruptionBudget.minAvailable=3", check=False)
    assert result.returncode != 0
    assert "podDisruptionBudget.minAvailable is 3 with replicaCount 3" in result.stderr


@pytest.mark.parametrize(
    "options",
    [(), ("--values", str(PG_VALUES))],
    ids=["sqlite", "postgresql"],
)
def test_one_replica_has_no_budget_nor_spread(helm: str, options: tuple[str, ...]) -> None:
    """With one pod a budget would block every drain (minAvailable 1) or allow nothing more
    than none; the spread has nothing to spread. PostgreSQL still rolls (no downtime);
    SQLite's single file needs Recreate."""
    objs = objects(helm, *options)
    assert not any(kind == "PodDisruptionBudget" for kind, _ in objs)
    assert "topologySpreadConstraints" not in deployment(objs)["spec"]["template"]["spec"]
    strategy = deployment(objs)["spec"]["strategy"]["type"]
    assert strategy == ("RollingUpdate" if options else "Recreate")
    assert env(objs)["INCIDENT_BRIDGE_SHUTDOWN_DELAY"]["value"] == "5"


def test_replicas_require_the_tokens(helm: str) -> None:
    """Every replica must take the same tokens: with more than one, the chart does not
    generate them (a new pair at each `helm template`), on the schema's side or not."""
    pg = ("--values", str(PG_VALUES), "--set", "replicaCount=2")
    for skip in ((), ("--skip-schema-validation",)):
        result = render(helm, *pg, *skip, check=False)
        assert result.returncode != 0
        assert "every replica must take the same API token" in result.stderr, result.stderr
        assert "auth.apiToken, or auth.existingSecret" in result.stderr
        result = render(helm, *pg, *skip, "--set", "auth.apiToken=an-api-token", check=False)
        assert result.returncode != 0
        assert "every replica must take the same webhook token" in result.stderr
    tokens = "auth.apiToken=an-api-token-0123456789,auth.webhookToken=a-webhook-token-012345"
    objs = objects(helm, *pg, "--set", tokens)
    secret = objs[("Secret", FULLNAME)]
    assert base64.b64decode(secret["data"]["api-token"]) == b"an-api-token-0123456789"
    # one replica: generated and kept, as before
    assert objects(helm, "--values", str(PG_VALUES))[("Secret", FULLNAME)]


def test_the_grace_period_covers_the_stop(helm: str) -> None:
    for options in (
        ("--set", "terminationGracePeriodSeconds=29"),
        ("--set", "shutdown.delaySeconds=10"),
        ("--values", str(REPLICAS_VALUES), "--set", "shutdown.timeoutSeconds=11"),
    ):
        for skip in ((), ("--skip-schema-validation",)):
            result = render(helm, *options, *skip, check=False)
            assert result.returncode != 0, options
            assert "less than shutdown.delaySeconds + shutdown.timeoutSeconds + 15" in (
                result.stderr
            )
    objs = objects(helm, "--set", "shutdown.delaySeconds=0,terminationGracePeriodSeconds=25")
    assert deployment(objs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 25
    assert env(objs)["INCIDENT_BRIDGE_SHUTDOWN_DELAY"]["value"] == "0"


def test_notes_name_the_replicas(helm: str, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, "--values", str(REPLICAS_VALUES))
    assert "3 replica(s), strategy RollingUpdate with maxUnavailable 0" in text
    assert f"PodDisruptionBudget {FULLNAME}: minAvailable 1." in text
    assert "docs/ha.md" in text
    one = notes(helm, tmp_path / "2", "--values", str(PG_VALUES))
    assert "1 replica(s)" in one and "PodDisruptionBudget" not in one
