"""The kept SIPp scenarios through a real OpenSIPS 1.10 record-routing proxy.

Proves the scenarios drive a proxy's dialog state, not just each other: in-dialog
requests follow the proxy's Record-Route, held calls are confirmed dialogs in the
proxy's ``dlg_list``, and every dialog ends. The proxy config is written per test (a
plain record-routing proxy with the dialog module, MI over UDP); the binary comes from
``OPENSIPS_BIN`` or PATH, its modules from ``<prefix>/lib{64,}/opensips/modules``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from harness.base.wait import WaitTimeout, wait_until
from harness.instruments.mi import MIClient
from harness.instruments.sipp import SippSummary, SippUAC, SippUAS, sipp_version

UAS_IP, UAC_IP, PROXY_IP = "127.0.0.2", "127.0.0.1", "127.0.0.1"


def _opensips() -> tuple[str | None, Path | None, str]:
    binary = os.environ.get("OPENSIPS_BIN") or shutil.which("opensips")
    if not binary or not Path(binary).exists():
        return None, None, "no OpenSIPS binary (set OPENSIPS_BIN or put opensips on PATH)"
    prefix = Path(binary).resolve().parent.parent
    for sub in ("lib64/opensips/modules", "lib/opensips/modules"):
        if (prefix / sub / "dialog.so").exists():
            return binary, prefix / sub, ""
    return None, None, f"no dialog.so under {prefix}/lib{{64,}}/opensips/modules"


BINARY, MODULES, WHY = _opensips()
pytestmark = [
    pytest.mark.live, pytest.mark.backend_only("local"),
    pytest.mark.skipif(sipp_version() is None, reason="sipp not found on PATH (Debian package sip-tester)"),
    pytest.mark.skipif(BINARY is None, reason=WHY),
]

CONFIG = """
debug=3
log_stderror=yes
children=2
disable_tcp=yes
listen=udp:{ip}:{port}
mpath="{modules}/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "sipmsgops.so"
loadmodule "uri.so"
loadmodule "dialog.so"
loadmodule "mi_datagram.so"
modparam("mi_datagram", "socket_name", "udp:{ip}:{mi_port}")
modparam("dialog", "default_timeout", 3600)

route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    t_check_trans();
    if (is_method("INVITE")) {{ create_dialog(); record_route(); }}
    if (!t_relay()) sl_reply_error();
}}
"""


def _free_udp(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class Proxy:
    def __init__(self, addr: str, mi: MIClient, log: Path) -> None:
        self.addr, self.mi, self.log = addr, mi, log

    def stats(self) -> dict[str, int]:
        return self.mi.get_statistics("dialog:")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    port, mi_port = _free_udp(PROXY_IP), _free_udp(PROXY_IP)
    cfg = tmp_path / "proxy.cfg"
    cfg.write_text(CONFIG.format(ip=PROXY_IP, port=port, mi_port=mi_port, modules=MODULES))
    log = tmp_path / "opensips.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BINARY), "-F", "-E", "-f", str(cfg)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        mi = MIClient((PROXY_IP, mi_port))
        try:
            mi.wait_ready(15)
        except Exception:
            pytest.fail(f"OpenSIPS did not answer MI (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        yield Proxy(f"{PROXY_IP}:{port}", mi, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def through(proxy: Proxy, tmp_path: Path, scenario: str, calls: int = 3) -> tuple[SippSummary, SippSummary]:
    with SippUAS(scenario, UAS_IP, None, workdir=tmp_path, pause_ms=50) as uas:
        a = SippUAC(scenario, uas.address, UAC_IP, None, workdir=tmp_path, calls=calls, rate=50, pause_ms=50,
                    outbound_proxy=proxy.addr).start().wait(30)
    b = uas.result()
    assert (a.exit_code, a.successful, a.failed) == (0, calls, 0), a.errors
    assert (b.successful, b.failed) == (calls, 0), b.errors
    assert {(c.call_id, c.from_tag, c.to_tag) for c in a.calls} == {(c.call_id, c.from_tag, c.to_tag) for c in b.calls}
    return a, b


def wait_stat(proxy: Proxy, name: str, value: int, timeout: float = 10) -> dict[str, int]:
    """The proxy's statistics once ``name`` reached ``value`` (at the deadline: the last ones)."""
    try:
        return wait_until(lambda: (st := proxy.stats()).get(name) == value and st,
                          timeout=timeout, what=f"{name} == {value}")
    except WaitTimeout:
        return proxy.stats()


@pytest.mark.parametrize("scenario", ["basic", "reinvite", "callee_bye", "long_headers", "record_route"])
def test_confirmed_scenarios_through_proxy(proxy: Proxy, tmp_path: Path, scenario: str) -> None:
    a, b = through(proxy, tmp_path, scenario)
    for c in a.calls:
        ok = next(m for m in c.messages if m.code == 200 and m.cseq == (1, "INVITE"))
        rr = ok.headers("Record-Route")
        assert rr[-1] == f"<sip:{PROXY_IP}:{proxy.addr.split(':')[1]};lr;ftag={c.from_tag};did={rr[-1].split('did=')[1]}"
        for m in c.messages:  # every in-dialog request of the caller crosses the proxy
            if m.direction == "sent" and not m.is_response and (m.method != "INVITE" or m.cseq[0] > 1):
                assert (m.header("Route") or "").startswith(f"<sip:{PROXY_IP}:")
        if scenario == "record_route":
            assert (ok.header("Route") or "") == ""
            route = next(m for m in c.messages if m.direction == "sent" and m.method == "BYE").header("Route")
            assert route is not None and route.count("<sip:") == 3 and "hop1" in route and "hop2" in route
    for c in b.calls:  # the proxy's BYE reached the callee through the recorded hops
        byes = [m for m in c.messages if m.method == "BYE" and not m.is_response]
        assert byes
    st = wait_stat(proxy, "active_dialogs", 0)
    assert (st["processed_dialogs"], st["active_dialogs"], st["failed_dialogs"]) == (3, 0, 0)


def test_cancel_through_proxy_never_confirms(proxy: Proxy, tmp_path: Path) -> None:
    a, _ = through(proxy, tmp_path, "cancel")
    for c in a.calls:
        assert [(r.method, r.code) for r in c.responses if r.code >= 180] == [
            ("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)]
    st = wait_stat(proxy, "active_dialogs", 0)
    assert (st["processed_dialogs"], st["active_dialogs"]) == (3, 0)
    assert st["failed_dialogs"] == 3
    # ended dialogs linger in state 5 (deleted) until their transactions are freed
    assert {d.state for d in proxy.mi.dlg_list()} <= {5}


def test_held_calls_are_confirmed_dialogs_in_proxy(proxy: Proxy, tmp_path: Path) -> None:
    n = 50
    with SippUAS("reinvite", UAS_IP, None, workdir=tmp_path) as uas:
        with SippUAC("reinvite", uas.address, UAC_IP, None, workdir=tmp_path, calls=n, rate=200, hold=True,
                     pause_ms=0, outbound_proxy=proxy.addr) as uac:
            uac.wait_held(timeout=20)
            held = {(c.call_id, c.from_tag, c.to_tag) for c in uac.result().calls}
            dialogs = proxy.mi.dlg_list()
            assert {d.key for d in dialogs} == held
            assert {d.state for d in dialogs} == {4}  # confirmed: 200 OK and ACK seen
            uac.release()
            a = uac.wait(30)
    assert (a.successful, a.failed) == (n, 0)
    for c in a.calls:
        assert c.codes("INVITE", cseq=2)[-1] == 200 and c.codes("BYE") == [200]
    st = wait_stat(proxy, "active_dialogs", 0)
    assert (st["processed_dialogs"], st["active_dialogs"]) == (n, 0)
    assert {d.state for d in proxy.mi.dlg_list()} <= {5}
