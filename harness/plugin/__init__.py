"""pytest plugin: real OpenSIPS clusters as fixtures (installed as ``opensips_harness``).

Fixtures (each small and overridable in your own conftest.py; `fixtures`):

- ``harness_settings`` — the YAML settings (``harness/base/defaults.yaml`` + ``$HARNESS_SETTINGS``),
  with ``--opensips-config FILE`` (your own config template, checked once up front by
  harness.cluster.user_config) when given.
- ``opensips_backend`` — the `harness.backends.BackendKind` that runs OpenSIPS
  (``--opensips-backend``); with ``auto`` skips the test with the exact reason when none
  can, with a backend named explicitly fails (error) with that backend's reason.
- ``opensips_cluster`` — factory: ``opensips_cluster(("primary", "backup"), peer=True)``
  starts a cluster (`harness.live.start`) on its own network, captures its traffic, and
  tears it down after the test; it returns the `harness.live.LiveCluster` (``.cluster``,
  ``.peer``, ``.capture``). On failure the capture, a decoded SIP/BIN ladder and every
  node's log are saved under ``--harness-artifacts`` and attached to the report (`evidence`).
- ``sip_calls`` — factory running a SIPp scenario through a cluster.
- ``failover_report`` — hand it a failover's result; on failure its report.html (the run
  as pictures, `harness.experiments.failover.report`) joins the evidence.
- ``opensips_pair`` / ``opensips_builds`` — the releases a test runs on (`releases`);
  ``usrloc_pair`` — the 1.11/2.1 pair a registration test runs on (skipped when absent).

Markers: ``live`` (needs OpenSIPS), ``failover``, ``node_deaths_expected`` (teardown
otherwise fails a test after which a node of its clusters is found dead) and
``optional_release`` (the test runs on a release other than the session's own, e.g.
1.11.11 for usrloc replication, and is skipped — not failing the gate — without its build).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKEND_CHOICES, default_backend
from harness.backends.builds import BINARIES_ENV
from harness.cluster.warmup import STATS
from harness.experiments.gate import PLUGIN_NAME, GatePlugin
from harness.plugin.evidence import REPORT_KEY
from harness.plugin.fixtures import (
    failover_report,
    harness_settings,
    opensips_backend,
    opensips_cluster,
    sip_calls,
)
from harness.plugin.releases import (
    opensips_builds,
    opensips_pair,
    pytest_generate_tests,
    usrloc_pair,
)

__all__ = ["failover_report", "harness_settings", "opensips_backend", "opensips_builds", "opensips_cluster",
           "opensips_pair", "pytest_addoption", "pytest_configure", "pytest_generate_tests",
           "pytest_runtest_makereport", "pytest_sessionfinish", "pytest_terminal_summary",
           "pytest_testnodedown", "sip_calls", "usrloc_pair"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opensips", "OpenSIPS 1.10 harness")
    group.addoption("--opensips-backend", default=default_backend(),
                    choices=BACKEND_CHOICES,
                    help="how to run OpenSIPS for live tests (default: auto, or $HARNESS_BACKEND)")
    group.addoption("--opensips-config", default=None, metavar="FILE",
                    help="your own OpenSIPS config template for every cluster (see README)")
    group.addoption("--harness-artifacts", default=os.environ.get("HARNESS_ARTIFACTS", "artifacts"),
                    help="where failed live tests leave pcap, ladder and logs (default: artifacts)")
    group.addoption("--failover-calls", type=int,
                    default=int(os.environ.get("HARNESS_FAILOVER_CALLS", "200")),
                    help="concurrent calls in failover tests (default: 200; the paced test at size runs at least 1,000)")
    group.addoption("--harness-observed", metavar="FILE",
                    help="write what the live tests really ran against here (JSON; `harness run` reads it)")
    group.addoption("--opensips-version", action="append", default=[], metavar="V",
                    help="run the release-parametrized live tests (the behaviour checks) on release V "
                         "as primary and backup (repeatable, comma lists, `all`, `1.10`)")
    group.addoption("--opensips-pair", action="append", default=[], metavar="PRIMARY:BACKUP",
                    help="and on this mixed pair, e.g. 1.10.2:1.11.11 (repeatable)")
    group.addoption("--opensips-binary", action="append", default=[], metavar="V=PATH",
                    help=f"local backend: the binary of release V (repeatable; also ${BINARIES_ENV})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: needs a real OpenSIPS 1.10 (skipped with the reason otherwise)")
    config.addinivalue_line("markers", "failover: kills a primary and measures the takeover")
    config.addinivalue_line("markers", "node_deaths_expected: the test judges node deaths itself, "
                            "so teardown does not fail on a node that died")
    config.addinivalue_line("markers", "optional_release: runs on a release other than the session's "
                            "own (e.g. 1.11.11 for usrloc); skipped without its build, and that skip "
                            "does not fail harness run's gate")
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(GatePlugin(), PLUGIN_NAME)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixture teardown knows if the test failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(REPORT_KEY, {})[report.when] = report


# -- warm-up tally (the 1.10.5 recvfrom defect), summed over xdist workers ------------

def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["harness_warmup"] = (STATS.probed, STATS.died)
    elif STATS.probed:  # the controller (or a run without xdist): leave it for `harness run`
        artifacts = Path(session.config.getoption("--harness-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "warmup.json").write_text(json.dumps(
            {"probed": STATS.probed, "died": STATS.died, "summary": STATS.summary()}) + "\n")


def pytest_testnodedown(node: Any, error: Any) -> None:
    probed, died = getattr(node, "workeroutput", {}).get("harness_warmup", (0, 0))
    STATS.probed += probed
    STATS.died += died


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STATS.probed:
        terminalreporter.write_sep("-", "OpenSIPS harness")
        terminalreporter.write_line(STATS.summary())
