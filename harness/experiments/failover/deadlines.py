"""How long each step of a failover run may take: derived from its size and rates, never fixed."""

from __future__ import annotations

DEFAULT_RELEASE_RATE = 1000.0
#: the longest a SIP transaction can wait: 64 x T1 (timer B/F), SIPp's and OpenSIPS's
SIP_TRANSACTION_S = 32.0
#: the setup deadline assumes at least this rate is achieved (calls/s), whatever was asked
SETUP_FLOOR_RATE = 100.0
#: setup gives up when no call was set up for this long
STALL_S = 20.0
#: stopping SIPp (q, Q, TERM, KILL: 2.5 s each), tcpdump, the prober
STOP_ALLOWANCE = 30.0
#: judging: fixed part and seconds per call (parsing SIPp's trace and the capture took
#: 30-60 s at 10,000 calls on a shared 2-core machine; this allows 130 s)
JUDGE_S, JUDGE_PER_CALL_S = 30.0, 0.01
#: progress lines on stderr at most this often
PROGRESS_S = 2.0
#: dialogs per dlg_list page: mi_datagram fits about 32 KB of reply text in every 1.x
#: (harness.instruments.mi), and a dialog takes ~555 B on 1.10, ~680 B on 1.11/2.1 (50
#: of them never came back from 1.11.11)
PAGE = 25
#: SIPp socket buffers at size (the kernel caps them at net.core.rmem_max/wmem_max)
SIPP_BUFF_AT_SIZE = 4 << 20
#: first error lines of the backup kept in the result
ERROR_LINES = 10


def deadlines(calls: int, rate: float, release_rate: float) -> dict[str, float]:
    """Seconds each step may take, from the size and the rates (never fixed).

    setup: twice the time SIPp needs at ``rate``, or the time at SETUP_FLOOR_RATE if that
    is longer (a setup that cannot keep the asked rate still gets to finish; no progress
    for STALL_S ends it sooner), plus 30 s; sync: 30 s plus 10 ms per
    dialog (a paged dlg_list of 10,000 dialogs takes ~1 s); release: the paced release
    (2 requests per call at ``release_rate``) plus one full SIP transaction timeout, so
    a request sent last still gets every retransmission; judge: parsing SIPp's trace
    and the capture and judging every call, 30 s plus 10 ms per call.
    """
    return {"setup": 30.0 + max(2.0 * calls / rate, calls / SETUP_FLOOR_RATE),
            "sync": 30.0 + 0.01 * calls,
            "release": 2.0 * calls / release_rate + SIP_TRANSACTION_S + 15.0,
            "judge": JUDGE_S + JUDGE_PER_CALL_S * calls}

