"""pybin as a library: a stand-in primary replicates one dialog to a stand-in backup.

No OpenSIPS and no harness: two asyncio endpoints on localhost, then pybin's
reference replica applies what arrived with a 1.10 backup's rules. Prints one line
per step, so the output can be checked (tests/unit/test_pybin_example.py).
"""

from __future__ import annotations

import asyncio

from pybin import DlgState, make
from pybin.endpoint import BinEndpoint
from pybin.replica import Replica

VIP_SOCKET = "udp:10.0.0.100:5060"


async def replicate_one() -> None:
    async with BinEndpoint(("127.0.0.1", 0)) as backup:
        async with BinEndpoint(("127.0.0.1", 0), destinations=[backup.address]) as primary:
            primary.send(make(1, call_id=b"example-1", from_tag=b"f1", to_tag=b"t1",
                              caller_sock=VIP_SOCKET.encode(), callee_sock=VIP_SOCKET.encode(),
                              state=DlgState.CONFIRMED_NA, vars=((b"acct", b"a|b"),)))
            msg, _source = await backup.next_dialog(timeout=5)
    print(f"received {type(msg).__name__} call_id={msg.call_id.decode()} state={int(msg.state)} "
          f"vars={[(k.decode(), v.decode()) for k, v in msg.vars]}")
    replica = Replica([VIP_SOCKET])  # the listen sockets a 1.10 backup would own
    outcome = replica.apply(msg, now=1_800_000_000)
    print(f"replica: created={outcome.created}; active_dialogs={replica.stats.as_dict()['active_dialogs']}")


if __name__ == "__main__":
    asyncio.run(replicate_one())
