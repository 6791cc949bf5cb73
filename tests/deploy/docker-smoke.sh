#!/usr/bin/env bash
# Builds the Dockerfile and runs the image the way docs/deploy.md says, then checks it from inside
# the container's own network namespace (--network none: nothing is published on the host):
# the token is required, /-/healthy answers, a fixture webhook opens an incident that the API
# returns, the process is UID 10001, the bundled rules are loaded, the root filesystem is
# read-only and the database is on the /data volume.
#
# Needs a running Docker daemon (DOCKER_HOST as usual). With no image registry reachable, pass
# a base image made offline in BASE (see docs/deploy.md, "Docker"); the build stage needs PyPI.
# Not run by CI: see docs/deploy.md for what CI proves instead. Usage:
#   BASE=local/debian-python3:bookworm bash tests/deploy/docker-smoke.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BASE=${BASE:-python:3.12-slim}
IMAGE=${IMAGE:-incident-bridge:smoke}
NAME=incident-bridge-smoke-$$
VOLUME=$NAME-data
SECRETS=$(mktemp -d)
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$VOLUME" >/dev/null 2>&1 || true
  rm -rf "$SECRETS"
}
trap cleanup EXIT

DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build --network host --build-arg "BASE=$BASE" -t "$IMAGE" .

echo "== without a webhook credential the container refuses to start"
if out=$(docker run --rm --network none "$IMAGE" 2>&1); then
  echo "started without a webhook token: $out" >&2; exit 1
fi
grep -q "refusing to listen on 0.0.0.0:9096 without webhook credentials" <<<"$out"

echo "== run: read-only root, tmpfs /tmp, a volume on /data, the token from a file"
openssl rand -hex 32 >"$SECRETS/webhook-token" 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRETS/webhook-token"
chmod 0444 "$SECRETS/webhook-token"
docker run -d --name "$NAME" --network none --read-only --tmpfs /tmp \
  -v "$VOLUME:/data" -v "$SECRETS/webhook-token:/run/secrets/webhook-token:ro" \
  -v "$PWD/tests/fixtures/alertmanager-0.25/firing-group-bearer.json:/run/fixture.json:ro" \
  "$IMAGE" serve --webhook-token-file /run/secrets/webhook-token >/dev/null

# Everything below runs inside the container (its Python, its loopback).
docker exec -i "$NAME" python3 - <<'PY'
import json, os, time, urllib.error, urllib.request

base = "http://127.0.0.1:9096"
token = open("/run/secrets/webhook-token").read().strip()

def get(path, auth=None):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {auth}"} if auth else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read()

deadline = time.monotonic() + 30
while True:
    try:
        if get("/-/ready")[0] == 200:
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
print("ready; /-/healthy:", get("/-/healthy"))
api = open("/data/incident-bridge.db.api-token").read().strip()  # generated at first start
fixture = "/run/fixture.json"
body = json.dumps(json.load(open(fixture))["body"]).encode()
req = urllib.request.Request(base + "/api/v1/alerts", data=body, method="POST",
    headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=10) as resp:
    posted = json.load(resp)
print("webhook:", posted)
incident_id = posted["incidents"][0]["id"]
try:
    get(f"/api/v1/incidents/{incident_id}")
    raise SystemExit("the API answered a read without a token on 0.0.0.0")
except urllib.error.HTTPError as err:
    assert err.code == 401, err.code
incident = json.loads(get(f"/api/v1/incidents/{incident_id}", api)[1])
print("incident:", incident["id"], incident["status"], incident["title"])
rules = json.loads(get("/api/v1/rules", api)[1])
print("rules:", json.dumps(rules)[:300])
status = dict(line.split(":\t", 1) for line in open("/proc/1/status").read().splitlines() if ":\t" in line)
print("pid 1 Uid:", status["Uid"].split())
assert status["Uid"].split()[0] == "10001", status["Uid"]
try:
    open("/opt/venv/x", "w")
    raise SystemExit("the root filesystem is writable")
except OSError as err:
    print("root filesystem:", err.strerror)
print("/data:", sorted(os.listdir("/data")))
PY

echo "== the healthcheck as Docker runs it"
for _ in $(seq 1 60); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$NAME")
  [ "$health" = starting ] || break
  sleep 1
done
echo "health: $health"
[ "$health" = healthy ]
docker logs "$NAME" 2>&1 | grep -i -m 3 -E "rules|listening" || true
echo "docker smoke: all checks passed"
