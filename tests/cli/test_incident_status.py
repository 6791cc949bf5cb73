"""``incident update --public`` and ``incident components`` against a real ``serve`` process
whose rules have components: what each says, the public update on the status page, and the
API's refusals as one line with exit 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import at
from tests.cli.test_incident import cli, open_incident
from tests.integration.procs import Bridge, http

RULES = """
route:
  name: root
components:
  checkout: {name: Checkout}
  search: {name: Search, labels: {service: search}}
"""

pytestmark = pytest.mark.usefixtures("no_developer_settings")


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("status-rules") / "rules.yaml"
    path.write_text(RULES)
    yield path


@pytest.fixture(scope="module")
def bridge_args(rules_file: Path) -> list[str]:
    return ["--rules", str(rules_file)]


def test_a_public_update_and_links_by_hand(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge, service="search")
    flags = at(bridge)
    code, out, err = cli(
        capsys, "update", str(n), "db failover", "--public", "--public-text", "Search is slow.",
        "--public-title", "Slow search", "--as", "dana", *flags,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"#{n} status update #") and "sent by dana (public)" in out
    code, out, err = cli(
        capsys, "components", str(n), "--add", "checkout", "--remove", "search", *flags
    )
    assert (code, err) == (0, "")
    assert out.strip() == f"#{n} Components: linked to checkout; unlinked from search"
    page = http("GET", f"{bridge.url}/status")
    text = page.body.decode()
    assert "Search is slow." in text and "Slow search" in text and "db failover" not in text
    assert '<li class="component state-degraded"><span class="name">Checkout</span>' in text

    code, out, err = cli(capsys, "components", str(n), "--add", "billing", *flags)
    assert code == 1 and "add.0" in err and "billing" in err
    code, out, err = cli(capsys, "update", str(n), "x", "--public-text", "y", *flags)
    assert code == 1 and "public" in err
