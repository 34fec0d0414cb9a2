"""OpenSIPS 1.x Management Interface over UDP (the mi_datagram module).

Tests read a node's state through MI: which dialogs it holds (`dlg_list`), which
registrations (`ul_dump`, 1.11 and 2.1) and what the modules counted
(`get_statistics dialog:` / `usrloc:`). Replies are turned into typed values here so
tests compare fields, not text.

The replies' wire format and their parsing live in `harness.instruments.mi_replies`. A
reply must fit one datagram, and in practice about half of one: every 1.x
mi_datagram_write_node (1.10.5 … 2.1.5) checks each line against ``start + len``
where ``len`` is the room *left*, so the room shrinks twice as fast as it is used and a
tree past ~32.7 KB of text fails ("failed to write -line too long!!!") and nothing is
sent. So `dlg_list` pages with (index, count) (25 dialogs: ~17 KB on 1.11), and big
usrloc tables are read with ``ul_dump brief`` or counted by statistics.
"""

from __future__ import annotations

import socket
from typing import Callable

from harness.base.wait import WaitTimeout, wait_until
from harness.instruments.mi_replies import (
    DialogEntry,
    MIError,
    MIReply,
    ProcessEntry,
    format_request,
    parse_dialogs,
    parse_ps,
    parse_reply,
    parse_statistics,
)
from harness.instruments.mi_usrloc import UlDomain, parse_ul_dump

#: largest MI reply mi_datagram 1.10 sends (DATAGRAM_SOCK_BUF_SIZE); its writer fills
#: about half of it (see above)
MAX_REPLY = 65457
#: dialogs per dlg_list page; ~1 KB each leaves room for long headers
DEFAULT_PAGE = 25


class MITimeout(MIError):
    """No MI reply within the deadline (node down, wrong address, or reply too big)."""


SockFactory = Callable[[], socket.socket]


class MIClient:
    """Request/reply MI client for one node.

    sock_factory makes the UDP socket to send from (the local backend creates it in
    the cluster's namespace); `alive` is called while waiting and should raise (e.g.
    NodeDied) when the node is gone, so a dead node is reported as such, not as a
    timeout.
    """

    def __init__(self, addr: tuple[str, int], *, timeout: float = 2.0,
                 sock_factory: SockFactory | None = None,
                 alive: Callable[[], None] | None = None, name: str = "") -> None:
        self.addr = addr
        self.timeout = timeout
        self.name = name or f"{addr[0]}:{addr[1]}"
        self._sock_factory = sock_factory or _plain_socket
        self._alive = alive

    def command(self, command: str, *args: str, timeout: float | None = None,
                check: bool = True) -> MIReply:
        """Send one MI command and return its parsed reply (MIError on non-2xx if check)."""
        limit = self.timeout if timeout is None else timeout
        request = format_request(command, *args)
        sock = self._sock_factory()
        try:
            sock.sendto(request, self.addr)
            data = self._receive(sock, limit, command)
        finally:
            sock.close()
        reply = parse_reply(data)
        if check and not 200 <= reply.code < 300:
            raise MIError(f"MI {command} on {self.name}: {reply.code} {reply.reason}",
                          reply.code, reply.reason)
        return reply

    def _receive(self, sock: socket.socket, limit: float, command: str) -> bytes:
        """The node's reply; checks ``alive`` between short blocking reads."""
        def reply() -> bytes | None:
            sock.settimeout(0.1)
            try:
                data, peer = sock.recvfrom(MAX_REPLY + 1024)
            except (socket.timeout, BlockingIOError):
                return None
            return data if peer[:2] == tuple(self.addr) else None

        if self._alive:
            self._alive()
        try:
            return wait_until(reply, timeout=limit, interval=0.0, alive=self._alive,
                              what=f"the reply to MI {command} from {self.name}")
        except WaitTimeout:
            raise MITimeout(f"MI {command} on {self.name}: no reply within {limit:g}s") from None

    def dlg_list(self, *, context: bool = True, page_size: int = DEFAULT_PAGE) -> list[DialogEntry]:
        """All dialogs, paged so each reply fits a datagram.

        context=True uses dlg_list_ctx, which adds vars and profiles. Pages are read
        one after another, so dialogs created or ended meanwhile may be missed or seen
        twice (deduplicated by hash id).
        """
        cmd = "dlg_list_ctx" if context else "dlg_list"
        out: dict[tuple[int, int], DialogEntry] = {}
        index = 0
        while True:
            reply = self.command(cmd, str(index), str(page_size))
            total_node = next((n for n in reply.nodes if n.name == "dlg_counter"), None)
            page = parse_dialogs(reply)
            for d in page:
                out.setdefault((d.h_entry, d.h_id), d)
            total = int(total_node.value) if total_node else len(page)
            index += page_size
            if index >= total or not page:
                return list(out.values())

    def dlg_count(self) -> int:
        """How many dialogs ``dlg_list`` holds (ended ones that tm still references too):
        one page of one, whose reply carries 1.10's ``dlg_counter`` (dlg_hash.c
        internal_mi_print_dlgs), so it is cheap at any size."""
        reply = self.command("dlg_list", "0", "1")
        total = next((n for n in reply.nodes if n.name == "dlg_counter"), None)
        return int(total.value) if total is not None else len(parse_dialogs(reply))

    def dialog(self, callid: str, from_tag: str | None = None) -> DialogEntry | None:
        """One dialog by Call-ID (and from tag), or None. Uses dlg_list_ctx's lookup form."""
        args = [callid] + ([from_tag] if from_tag else [])
        reply = self.command("dlg_list_ctx", *args, check=False)
        if reply.code == 404:  # "404 No such dialog"
            return None
        if not 200 <= reply.code < 300:
            raise MIError(f"MI dlg_list_ctx on {self.name}: {reply.code} {reply.reason}",
                          reply.code, reply.reason)
        dialogs = parse_dialogs(reply)
        return dialogs[0] if dialogs else None

    def ul_dump(self, *, brief: bool = False) -> list[UlDomain]:
        """Every usrloc table with its AORs and their bindings, in the node's order.

        ``brief``: AOR names only. A reply must fit mi_datagram's ~32 KB (see above) and
        a full one takes about 285 bytes a binding: past ~110 bindings the node sends
        nothing (MITimeout); ``brief`` (~16 bytes an AOR) lists ~2,000 AORs; count
        bigger tables with ``get_statistics("usrloc:")``.
        """
        return parse_ul_dump(self.command("ul_dump", *(["brief"] if brief else [])))

    def get_statistics(self, group: str = "dialog:") -> dict[str, int]:
        """Statistics of a group (``dialog:``) or one statistic, as {name: int}."""
        return parse_statistics(self.command("get_statistics", group))

    def uptime(self) -> int:
        """Whole seconds since the node started (``uptime``'s ``Up time:: N [sec]``)."""
        reply = self.command("uptime")
        node = next((n for n in reply.nodes if n.name == "Up time"), None)
        try:
            return int(str(node.value).split()[0]) if node is not None else -1
        except ValueError:
            raise MIError(f"uptime: cannot read {node.value!r}") from None

    def ps(self, timeout: float | None = None) -> list[ProcessEntry]:
        return parse_ps(self.command("ps", timeout=timeout))

    def wait_ready(self, timeout: float) -> list[ProcessEntry]:
        """Ask `ps` until it answers (MITimeout after ``timeout`` s); returns processes.

        Short per-request timeouts, so a node that starts answering is seen at once.
        """
        def answer() -> list[ProcessEntry] | None:
            try:
                return self.ps(timeout=0.25)
            except MITimeout:
                return None

        try:
            return wait_until(answer, timeout=timeout, interval=0.0,
                              what=f"MI of {self.name} to answer")
        except WaitTimeout as err:
            raise MITimeout(str(err)) from None


def _plain_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    return s
