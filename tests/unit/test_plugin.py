"""The pytest plugin tested like a plugin: inner pytest sessions via pytester."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


LIVE_TEST = """
import pytest

@pytest.mark.live
def test_needs_a_cluster(opensips_cluster):
    opensips_cluster()
"""


def _no_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No OpenSIPS binary, and a docker socket that refuses (bound, never listening)."""
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    path = tmp_path / "refusing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    return path


def test_auto_skips_a_live_test_with_every_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    path = _no_backend(monkeypatch, tmp_path)
    pytester.makepyfile(LIVE_TEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        result = pytester.runpytest("--strict-markers", "--opensips-backend", "auto", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*no OpenSIPS to test against — docker: docker engine not reachable "
                                 f"({path}: Connection refused)*; local: *"])


def test_a_backend_asked_for_by_name_fails_with_its_reason(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 10, point 2: before, --opensips-backend docker|local skipped like auto, so
    a gate told to test on Docker went green with no engine."""
    path = _no_backend(monkeypatch, tmp_path)
    pytester.makepyfile(LIVE_TEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        docker = pytester.runpytest("--strict-markers", "--opensips-backend", "docker")
    docker.assert_outcomes(errors=1)
    docker.stdout.fnmatch_lines([
        "--opensips-backend docker cannot run: no OpenSIPS to test against — docker: "
        f"docker engine not reachable ({path}: Connection refused): start dockerd or set DOCKER_HOST"])
    local = pytester.runpytest("--strict-markers", "--opensips-backend", "local")
    local.assert_outcomes(errors=1)
    local.stdout.fnmatch_lines(["--opensips-backend local cannot run: "
                                "no OpenSIPS to test against — local: *"])
    for result in (docker, local):  # one line, no traceback of the plugin's internals
        lines = result.stdout.lines
        start = next(i for i, ln in enumerate(lines) if "ERROR at setup of test_needs_a_cluster" in ln)
        # up to the next section rule (in-process, the harness's own summary section may
        # follow when this process already ran live tests)
        end = next(i for i in range(start + 1, len(lines)) if lines[i][:3] in ("===", "---", "___"))
        assert len(lines[start + 1:end]) == 1, lines[start:end]


def test_options_and_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--opensips-backend*", "*--opensips-config*", "*--harness-artifacts*",
                                 "*--failover-calls*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.live:*", "@pytest.mark.failover:*"])


def test_an_unknown_backend_is_refused_by_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--opensips-backend", "vagrant")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice: 'vagrant'*"])


FAKE_BACKEND_CONFTEST = """
import socket

import pytest

from harness.cluster.interfaces import NodeAddresses, NodeDied
from harness.base.settings import load_settings


class FakeNode:
    def __init__(self, name, addresses):
        self.name, self._addr = name, addresses
        self.running = self.expected = False

    def start(self):
        self.running = self.expected = True

    def kill(self):
        self.running = self.expected = False

    stop = kill

    def check_alive(self):
        if self.expected and not self.running:
            raise NodeDied(f"node {self.name} died at 12:00:00 (exit code 139); last log lines:")

    def is_running(self):
        return self.running

    def mi(self):
        return self

    def ps(self):
        self.check_alive()
        return []

    def addresses(self):
        return self._addr

    def logs(self):
        return ""

    def take_vip(self, vip): ...
    def release_vip(self, vip): ...


class FakeBackend:
    name, vip, harness_ip, module_path = "fake", "10.1.2.100", "10.1.2.1", "/m"

    def __init__(self, settings):
        self.settings, self._n = settings, 10

    def open(self): ...
    def close(self): ...
    def refresh_neighbours(self, ip): ...

    def node_addresses(self, name):
        self._n += 1
        return NodeAddresses(name, f"10.1.2.{self._n}", 5062, 8080, self.vip, 5060)

    def create_node(self, name, config, addresses, artifact=None):
        return FakeNode(name, addresses)

    def module_path_for(self, artifact=None):
        return self.module_path

    def release(self, artifact=None):
        from harness.cluster.interfaces import Release
        return Release("1.10.5", "opensips 1.10.5-notls (x86_64/linux)")

    def udp_socket(self, port=0):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


class FakeKind:
    name, host_pids, supplies, builds_on_first_use = "fake", True, "binary", False
    resources = ("process",)

    def backend(self, settings, build=None):
        return FakeBackend(settings)


@pytest.fixture(scope="session")
def opensips_backend():
    # offline: no engine, no /proc sweep. pytester runs this session in the calling
    # process, so the real sweep is put back at its end: a later live test's cluster
    # start in the same xdist worker must sweep (test_killed_run)
    import harness.live
    real = harness.live.sweep_quietly
    harness.live.sweep_quietly = lambda: []
    yield FakeKind()
    harness.live.sweep_quietly = real
"""


def test_teardown_fails_a_test_after_which_a_node_is_dead(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Issue 10, point 5: a test that never queries the backup passed although the
    backup had crashed (fault: the backup dies during the body, unobserved)."""
    pytester.makeconftest(FAKE_BACKEND_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        def _cluster(opensips_cluster):
            return opensips_cluster(capture=False, warmup=False).cluster

        def test_backup_crashes_unobserved(opensips_cluster):
            _cluster(opensips_cluster).nodes["backup"].running = False

        @pytest.mark.node_deaths_expected
        def test_deaths_are_this_tests_subject(opensips_cluster):
            _cluster(opensips_cluster).nodes["backup"].running = False

        def test_primary_killed_on_purpose(opensips_cluster):
            _cluster(opensips_cluster).nodes["primary"].kill()

        def test_everyone_alive(opensips_cluster):
            _cluster(opensips_cluster)
        """
    )
    result = pytester.runpytest("--strict-markers", "--harness-artifacts", str(tmp_path / "artifacts"))
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_backup_crashes_unobserved*",
        "a node died during the test: node backup died at 12:00:00 (exit code 139); last log lines:"])
    # the crash leaves its evidence like any failure
    assert (tmp_path / "artifacts" / "failures" / "test_teardown_fails_a_test_after_which_a_node_is_dead.py_"
            "test_backup_crashes_unobserved" / "cluster0" / "backup.log").exists()


def test_a_refused_opensips_config_errors_the_live_test_in_one_line(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--opensips-config is checked before any cluster (harness.cluster.user_config): the refusal
    is the test's error, one line, whatever backend could have run it."""
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    no_accept = Path(__file__).resolve().parents[2] / "examples" / "user-config" / "no-accept.cfg.j2"
    pytester.makepyfile(LIVE_TEST)
    result = pytester.runpytest("--strict-markers", "--opensips-backend", "local",
                                "--opensips-config", str(no_accept))
    result.assert_outcomes(errors=1)
    lines = result.stdout.lines
    start = next(i for i, ln in enumerate(lines) if "ERROR at setup of test_needs_a_cluster" in ln)
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:3] in ("===", "---", "___"))
    assert lines[start + 1:end] == [
        'config no-accept.cfg.j2: the backup does not accept replicated dialogs '
        '(modparam("dialog", "accept_replicated_dialogs", 1) is missing)']


def test_the_fake_backend_session_leaves_the_run_start_sweep_in_place(pytester: pytest.Pytester) -> None:
    """The fake backend's session runs in this process and switches the sweep off; left
    switched off, every later cluster start in this xdist worker skipped its sweep, and
    test_killed_run failed whenever it ran after this module on the same worker."""
    import harness.live
    from harness.backends.clean import sweep_quietly

    pytester.makeconftest(FAKE_BACKEND_CONFTEST)
    pytester.makepyfile("def test_uses_the_fake(opensips_backend):\n    assert opensips_backend.name == 'fake'\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert harness.live.sweep_quietly is sweep_quietly
