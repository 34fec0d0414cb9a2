"""harness.live.start with a fake backend kind: the one way in, and the way out in reverse."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cluster import FakeBackend

import harness.live as live
from harness.backends import BackendKind


class FakeKind:
    """A `BackendKind` stand-in whose backend is `FakeBackend` (no engine, no root)."""

    name, host_pids, supplies, builds_on_first_use = "fake", True, "binary", False
    resources = ("process",)

    def __init__(self, backend: FakeBackend) -> None:
        self.made = backend
        backend.capture_host = lambda: "capture host"  # type: ignore[method-assign]

    def backend(self, settings: object, build: object = None) -> FakeBackend:
        self.made.log.append(("made", str(build)))
        return self.made


class FakeCapture:
    def __init__(self, host: object, path: Path, **kw: object) -> None:
        self.path, self.log = path, LOG

    def start(self) -> None:
        self.log.append(("capture", "start"))

    def stop(self) -> None:
        self.log.append(("capture", "stop"))


class FakePeer:
    def __init__(self, local: tuple[str, int], **kw: object) -> None:
        self.address = (local[0], 40000)

    def start(self) -> FakePeer:
        LOG.append(("peer", "start"))
        return self

    def close(self) -> None:
        LOG.append(("peer", "close"))


LOG: list[tuple[str, str]] = []


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKind, list[str]]:
    backend = FakeBackend()
    LOG.clear()
    backend.log = LOG
    swept: list[str] = []
    monkeypatch.setattr(live, "sweep_quietly", lambda: swept.append("sweep") or LOG.append(("sweep", "")))
    monkeypatch.setattr(live, "Capture", FakeCapture)
    monkeypatch.setattr(live, "BinPeer", FakePeer)
    return FakeKind(backend), swept


def test_start_sweeps_first_and_tears_down_in_reverse(fake, tmp_path: Path) -> None:
    kind, swept = fake
    with live.start(kind, kind.made.settings, peer=True, capture=True, warmup=False,  # type: ignore[arg-type]
                    workdir=tmp_path) as lc:
        assert LOG[:5] == [("sweep", ""), ("made", "None"), ("open", ""), ("capture", "start"),
                           ("peer", "start")]
        assert lc.peer is not None and lc.capture is not None and lc.workdir == tmp_path
        assert lc.cluster.destinations("primary") == ["10.1.2.12:5062", "10.1.2.1:40000"]
        assert lc.backend is kind.made
        mark = len(LOG)
    # the cluster kills its nodes... then the peer, the capture, the backend, in reverse
    assert LOG[mark:][-3:] == [("peer", "close"), ("capture", "stop"), ("close", "")]
    assert swept == ["sweep"] and tmp_path.is_dir()  # the caller's workdir stays


def test_the_witness_goes_first(fake) -> None:
    kind, _ = fake
    with live.start(kind, kind.made.settings, peer="first", warmup=False) as lc:  # type: ignore[arg-type]
        assert lc.cluster.destinations("backup") == ["10.1.2.1:40000", "10.1.2.11:5062"]
        own = lc.workdir
        assert own.is_dir()
    assert not own.exists()  # a workdir it made is its own to remove


def test_a_failed_start_tears_down_what_was_started(fake) -> None:
    kind, _ = fake
    kind.made.fail = ("backup",)
    with pytest.raises(RuntimeError, match="backup cannot start"):
        with live.start(kind, kind.made.settings, peer=True, capture=True, warmup=False):  # type: ignore[arg-type]
            pass  # pragma: no cover
    assert LOG[-3:] == [("peer", "close"), ("capture", "stop"), ("close", "")]


def test_the_fake_kind_has_every_capability_the_table_declares() -> None:
    """FakeKind stands in for a table row: it must not lack a field callers may ask."""
    fields = {f for f in BackendKind.__dataclass_fields__ if f != "implementation"}
    assert fields <= set(vars(FakeKind))


class FakeLink:
    def __init__(self, name: str, listen: tuple[str, int], dest: tuple[str, int], impairment: object,
                 **kw: object) -> None:
        self.name, self.dest, self.impairment, self.log_path = name, dest, impairment, kw["log"]
        self.address = (listen[0], 41000)

    def start(self) -> FakeLink:
        LOG.append(("link", f"start {self.name} -> {self.dest[0]}:{self.dest[1]}"))
        return self

    def close(self) -> None:
        LOG.append(("link", f"close {self.name}"))


def test_a_link_puts_its_relay_in_that_replication_path_only(fake, monkeypatch, tmp_path: Path) -> None:
    kind, _ = fake
    monkeypatch.setattr(live, "LinkRelay", FakeLink)
    with live.start(kind, kind.made.settings, peer="first", warmup=False, workdir=tmp_path,  # type: ignore[arg-type]
                    link={"primary > backup": "loss=0.1,seed=7"}) as lc:
        relay = lc.links["primary>backup"]
        backup = lc.cluster.addresses["backup"]
        assert relay.dest == backup.bin_addr and relay.log_path == tmp_path / "link-primary-backup.jsonl"
        # the primary sends to the relay instead of the backup, the witness still first ...
        assert lc.cluster.destinations("primary") == ["10.1.2.1:40000", "10.1.2.1:41000"]
        # ... and the backup still straight to the primary
        assert lc.cluster.destinations("backup") == ["10.1.2.1:40000", f"{lc.cluster.addresses['primary'].ip}:5062"]
        mark = len(LOG)
    # the relay outlives the cluster (started before it, closed after it)
    assert ("link", "close primary>backup") in LOG[mark:]
    assert LOG[mark:].index(("link", "close primary>backup")) < LOG[mark:].index(("peer", "close"))


@pytest.mark.parametrize("name, message", [
    ("primary-backup", "write it SOURCE>DEST"),
    ("primary>nobody", "no node 'nobody'"),
    ("backup>backup", "does not replicate to itself"),
])
def test_a_bad_link_is_one_line_before_any_relay(fake, monkeypatch, name: str, message: str) -> None:
    kind, _ = fake
    monkeypatch.setattr(live, "LinkRelay", FakeLink)
    with pytest.raises(live.LinkError, match=message):
        with live.start(kind, kind.made.settings, warmup=False, link={name: ""}):  # type: ignore[arg-type]
            pass  # pragma: no cover
    assert not any(entry[0] == "link" for entry in LOG)
