"""Owner labels and the leftover rule, offline: a fake /proc with concrete pids and start times.

Why: the sweep removes other processes' resources, so its rule (remove only when the
owner is on this host and gone, a reused pid counting as gone) must be right before
any live run relies on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.backends import clean
from harness.backends.clean import (
    Outcome,
    Resource,
    chosen,
    directory_resources,
    process_resources,
)
from harness.base.owner import (
    OWNER_ENV,
    Owner,
    alive,
    ancestors,
    child_env,
    is_leftover,
    me,
    process_owner,
    start_time,
)
from harness.cli import main

HOST = "ci-7"


def fake_proc(root: Path, pid: int, start: int, ppid: int = 1, comm: str = "opensips",
              environ: dict[str, str] | None = None, state: str = "S") -> None:
    """A /proc/PID directory as the kernel writes it (stat fields 1..22, environ, comm)."""
    d = root / str(pid)
    d.mkdir(parents=True)
    fields_3_to_21 = [state, str(ppid)] + ["7"] * 17
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields_3_to_21) + f" {start} 4096 0\n")
    (d / "comm").write_text(comm + "\n")
    env = environ or {}
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))


def test_start_time_is_field_22_even_with_spaces_and_parens_in_the_name(tmp_path: Path) -> None:
    fake_proc(tmp_path, 4242, 987654, comm="sipp (x) y")
    assert start_time(4242, tmp_path) == 987654
    assert start_time(4243, tmp_path) is None


def test_start_time_of_this_process_matches_the_kernel() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert start_time(os.getpid()) == int(stat.rsplit(")", 1)[1].split()[19])
    assert me() == Owner(me().host, os.getpid(), int(stat.rsplit(")", 1)[1].split()[19]))


def test_dead_live_and_reused_owners(tmp_path: Path) -> None:
    fake_proc(tmp_path, 100, 5000)                       # owner 100 alive since tick 5000
    assert alive(Owner(HOST, 100, 5000), tmp_path)
    assert not alive(Owner(HOST, 100, 4999), tmp_path)   # pid reused by a later process
    assert not alive(Owner(HOST, 101, 5000), tmp_path)   # no such pid: dead
    assert is_leftover(Owner(HOST, 101, 5000), HOST, tmp_path)
    assert is_leftover(Owner(HOST, 100, 4999), HOST, tmp_path)
    assert not is_leftover(Owner(HOST, 100, 5000), HOST, tmp_path)
    assert not is_leftover(Owner("other-host", 101, 5000), HOST, tmp_path)  # not ours to judge
    assert not is_leftover(None, HOST, tmp_path)                            # unlabelled
    # a killed runner its parent has not reaped yet: a zombie with its pid and start time
    fake_proc(tmp_path, 102, 6000, state="Z", comm="python")
    assert not alive(Owner(HOST, 102, 6000), tmp_path)
    assert is_leftover(Owner(HOST, 102, 6000), HOST, tmp_path)


def test_owner_text_and_tag_round_trip() -> None:
    owner = Owner("ci-7", 31337, 12345678)
    assert str(owner) == "ci-7 31337 12345678"
    assert Owner.parse(str(owner)) == owner
    assert owner.tag == "31337t12345678"
    assert Owner.from_tag("31337t12345678", "ci-7") == owner
    assert Owner.parse("") is None
    assert Owner.parse("ci-7 pid 1") is None
    assert Owner.from_tag("31337", "ci-7") is None


def resource(kind: str, name: str, owner: Owner | None, pid_only: bool = False) -> Resource:
    return Resource(kind, name, owner, lambda: None, pid_only=pid_only)


def test_sweep_chooses_dead_and_reused_owners_and_all_with_everything(tmp_path: Path) -> None:
    fake_proc(tmp_path, 100, 5000)
    fake_proc(tmp_path, 200, 7000)
    items = [
        resource("container", "osh-live", Owner(HOST, 100, 5000)),
        resource("container", "osh-dead", Owner(HOST, 300, 5000)),
        resource("network", "osh-reused", Owner(HOST, 200, 6999)),
        resource("namespace", "hx300t1x0-hub", Owner(HOST, 300, 1)),
        resource("namespace", "hx200x0-hub", Owner(HOST, 200, 0), pid_only=True),  # older name, pid alive
        resource("namespace", "hx301x0-hub", Owner(HOST, 301, 0), pid_only=True),  # older name, pid gone
        resource("container", "osh-unlabelled", None),
        resource("container", "osh-elsewhere", Owner("ci-8", 300, 5000)),
    ]
    names = [r.name for r in chosen(items, everything=False, host=HOST, proc=tmp_path)]
    assert names == ["osh-dead", "osh-reused", "hx300t1x0-hub", "hx301x0-hub"]
    assert len(chosen(items, everything=True, host=HOST, proc=tmp_path)) == 8


def test_marked_processes_are_found_except_our_own_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_proc(tmp_path, 1, 1, ppid=0, comm="init")
    fake_proc(tmp_path, 10, 100, ppid=1, comm="python")  # "us"
    fake_proc(tmp_path, 11, 110, ppid=10, comm="pytest", environ={OWNER_ENV: f"{HOST} 9 90"})  # a child of ours: not an ancestor
    fake_proc(tmp_path, 20, 200, ppid=1, comm="opensips", environ={OWNER_ENV: f"{HOST} 9 90", "PATH": "/bin"})
    fake_proc(tmp_path, 21, 210, ppid=1, comm="sipp", environ={"PATH": "/bin"})
    monkeypatch.setattr(os, "getpid", lambda: 10)
    assert ancestors(10, tmp_path) == {10, 1}
    assert process_owner(20, tmp_path) == Owner(HOST, 9, 90)
    assert process_owner(21, tmp_path) is None
    found = process_resources(tmp_path)
    assert [(r.name, r.owner) for r in found] == [("11 (pytest)", Owner(HOST, 9, 90)),
                                                  ("20 (opensips)", Owner(HOST, 9, 90))]


def test_child_env_carries_this_process_as_owner() -> None:
    env = child_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", OWNER_ENV: str(me())}
    assert Owner.parse(env[OWNER_ENV]) == me()


def test_work_directories_carry_their_owner_in_the_name(tmp_path: Path) -> None:
    (tmp_path / "harness-hx300t5000x0-abc123").mkdir()
    (tmp_path / "harness-failover-xyz").mkdir()       # not a backend work dir: not listed
    (tmp_path / "harness-hx12x0-old").mkdir()         # older name: its pid alone decides
    found = directory_resources(HOST, tmp_path)
    assert [(Path(r.name).name, r.owner, r.pid_only) for r in found] == [
        ("harness-hx12x0-old", Owner(HOST, 12, 0), True),
        ("harness-hx300t5000x0-abc123", Owner(HOST, 300, 5000), False)]
    found = found[1:]
    found[0].remove()
    assert not (tmp_path / "harness-hx300t5000x0-abc123").exists()


def test_removal_order_and_one_line_per_thing_or_error() -> None:
    done: list[str] = []

    def refuse() -> None:
        raise OSError("device busy\nmore detail")

    items = [Resource("namespace", "hx1t2x0-hub", Owner(HOST, 1, 2), lambda: done.append("ns")),
             Resource("network", "osh-n", None, refuse),
             Resource("container", "osh-c", Owner(HOST, 1, 2), lambda: done.append("c"))]
    outcome = Outcome()
    clean.remove(items, outcome)
    assert done == ["c", "ns"]
    assert outcome.removed == [f"removed container osh-c (owner {HOST} 1 2)",
                               f"removed namespace hx1t2x0-hub (owner {HOST} 1 2)"]
    assert outcome.errors == ["could not remove network osh-n: device busy"]


def test_harness_clean_prints_each_removal_and_exits_by_errors(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[bool] = []

    def fake_sweep(*, everything: bool = False) -> Outcome:
        seen.append(everything)
        return Outcome(removed=["removed container osh-a (owner ci-7 5 6)"],
                       errors=["could not remove network osh-n: busy"] if everything else [],
                       notes=["docker skipped: engine not reachable (no socket)"])

    monkeypatch.setattr(clean, "sweep", fake_sweep)
    assert main(["clean"]) == 0
    out, err = capsys.readouterr()
    assert out == "removed container osh-a (owner ci-7 5 6)\n"
    assert err == "harness: docker skipped: engine not reachable (no socket)\n"
    assert main(["clean", "--all"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == ["harness: docker skipped: engine not reachable (no socket)",
                                "harness: could not remove network osh-n: busy"]
    assert seen == [False, True]
    monkeypatch.setattr(clean, "sweep", lambda everything=False: Outcome())
    assert main(["clean"]) == 0
    assert capsys.readouterr().out == "nothing to remove\n"
