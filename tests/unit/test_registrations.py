"""REGISTER scenarios and the users that run them (offline: files and command lines)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.experiments import registrations
from harness.experiments.registrations import RegistrationError, Users, user_names
from harness.instruments import sipp
from harness.instruments.sipp import CALL_USER, REGISTRATIONS, SippProcess

#: per scenario: the CSeq of each REGISTER and how many Contact lines it carries
SHAPES = {"register": [(1, 1)], "refresh": [(1, 1), (2, 1)], "unregister": [(1, 2), (2, 1), (3, 1)],
          "multi_contact": [(1, 3), (2, 1)], "expiry": [(1, 2)]}


def _requests(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"<!\[CDATA\[(.*?)\]\]>", text, re.S)]


@pytest.mark.parametrize("name", sorted(REGISTRATIONS))
def test_register_scenarios_are_caller_only_and_well_formed(name: str) -> None:
    text = sipp.scenario_path(name, "uac").read_text(encoding="latin-1")
    root = ET.fromstring(text)
    assert "[timestamp] END [call_id]" in [e.get("message") for e in root.iter("log")]
    assert [e.get("response") for e in root.iter("recv")] == ["200"] * len(SHAPES[name])
    shape = []
    for request in _requests(text):
        assert request.startswith("REGISTER sip:[remote_ip]:[remote_port] SIP/2.0")
        assert "To: <sip:[field0]@[remote_ip]>" in request and "Call-ID: [call_id]" in request
        cseq = int(re.search(r"CSeq: (\d+) REGISTER", request)[1])  # type: ignore[index]
        contacts = re.findall(r"^\s*Contact: (.*)$", request, re.M)
        assert all(c == "*" or "@[contact_host]" in c for c in contacts)
        shape.append((cseq, len(contacts)))
    assert shape == SHAPES[name]
    keys = set(re.findall(r"\[(\w+)\]", text)) - {"remote_ip", "remote_port", "transport", "local_ip",
                                                   "local_port", "branch", "pid", "call_number",
                                                   "call_id", "field0", "timestamp", "contact_host"}
    assert keys <= set(REGISTRATIONS[name].keys), keys  # every -key it uses has a default
    with pytest.raises(ValueError, match="unknown scenario"):
        sipp.scenario_path(name, "uas")


def test_call_user_calls_the_user_at_the_vip_and_is_answered_by_basic() -> None:
    text = sipp.scenario_path(CALL_USER, "uac").read_text(encoding="latin-1")
    assert "INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0" in text
    assert "[service]" not in text
    ET.fromstring(sipp.render_scenario(text, hold=True))
    assert not (sipp.SCENARIO_DIR / f"{CALL_USER}_uas.xml").exists()


def test_user_names_are_distinct_and_ordered() -> None:
    assert user_names(3) == ["user0001", "user0002", "user0003"]
    assert user_names(12345)[-1] == "user12345" and len(set(user_names(12345))) == 12345
    with pytest.raises(RegistrationError):
        user_names(0)


class _Host(SimpleNamespace):
    def argv(self, command: list[str], *, cwd: str | None = None) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]


def _cluster() -> SimpleNamespace:
    hosts = {"users": _Host(name="users", ip="10.1.0.200"), "dialer": _Host(name="dialer", ip="10.1.0.201")}
    backend = SimpleNamespace(client=hosts.__getitem__, socket=lambda kind: None)
    return SimpleNamespace(backend=backend, vip="10.1.0.100", sip_addr=("10.1.0.100", 5060))


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[SippProcess]:
    runs: list[SippProcess] = []
    monkeypatch.setattr(SippProcess, "start", lambda self, timeout=10.0: runs.append(self) or self)
    return runs


def test_users_register_answer_and_call_through_the_vip(tmp_path: Path, started: list[SippProcess]) -> None:
    users = Users(_cluster(), ["alice", "bob"], workdir=tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / "users.csv").read_text() == "SEQUENTIAL\nalice;\nbob;\n"
    assert users.contact("alice") == "sip:alice@10.1.0.200:5080"
    reg = users.register("expiry", keys={"expires": "5"}, extra_args=["-cid_str", "x-%u@%s"])
    cmd = reg.command()
    assert cmd[:4] == ["ip", "netns", "exec", "users"] and cmd[cmd.index("sipp") + 1] == "10.1.0.100:5060"
    assert cmd[cmd.index("-i") + 1] == "10.1.0.200" and cmd[cmd.index("-p") + 1] == "5090"
    assert cmd[cmd.index("-m") + 1] == "2" and "-rsa" not in cmd
    keys = {cmd[i + 1]: cmd[i + 2] for i, word in enumerate(cmd) if word == "-key"}
    assert keys == {"expires": "5", "contact_host": "10.1.0.200:5080"}
    assert cmd[-4:] == ["-inf", str(tmp_path / "users.csv"), "-cid_str", "x-%u@%s"]
    uas = users.answer()
    assert uas.scenario == "basic" and (uas.local_ip, uas.local_port) == ("10.1.0.200", 5080)
    assert "-inf" not in uas.command()
    call = users.call(calls=1)
    cmd = call.command()
    assert cmd[:4] == ["ip", "netns", "exec", "dialer"] and cmd[cmd.index("-m") + 1] == "1"
    assert call.scenario == CALL_USER and cmd[cmd.index("-inf") + 1] == str(tmp_path / "users.csv")
    assert started == [reg, uas, call]
    assert REGISTRATIONS["expiry"].keys == {"expires": "2"}  # the default the test overrode


def test_users_refuse_what_sip_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="cannot be a SIP user part"):
        Users(_cluster(), ["a;b"], workdir=tmp_path)  # type: ignore[arg-type]
    users = Users(_cluster(), ["a"], workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="unknown REGISTER scenario 'basic'"):
        users.register("basic")
    assert registrations.USER_PORT != registrations.REGISTER_PORT
