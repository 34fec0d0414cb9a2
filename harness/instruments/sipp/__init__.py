"""SIP traffic for the harness: SIPp driven from Python, results parsed per call.

Why this module exists: the suite must drive real calls through OpenSIPS nodes and then
reason about *each call* (Call-ID, tags, which responses came back and when), not just
about SIPp's exit code. Failover tests also need calls held open while the test kills a
node, then resumed on demand.

How it works
------------
* Scenarios are kept in ``scenarios`` as ``<name>_uac.xml`` / ``<name>_uas.xml``
  pairs (see `SCENARIOS`). Our own UAS files echo Record-Route (SIPp's built-in ``uas``
  does not), and callers send in-dialog requests to ``[next_url]`` with ``[routes]``, so
  they follow the proxy's Record-Route.
* Each SIPp run writes, into a *workdir* shared with the test process, its message log
  (``-trace_msg``: every datagram sent and received, retransmissions included, with a
  microsecond timestamp), an event log (``-trace_logs``: ``<log>`` markers such as
  ``END <call-id>``), an error log and its statistics CSV. SIPp flushes after every
  line, so these are read while SIPp runs. SIPp runs with ``TZ=UTC`` because the message
  log's timestamps carry no zone.
* Readiness is observed, not slept for: SIPp writes the first statistics row from its
  traffic loop, which starts only after its SIP (and 3PCC) sockets are bound.
* Holding calls: with ``hold=True`` the caller scenario's ``<!--HOLD-->`` marker becomes
  ``<log HELD>`` + ``<recvCmd>``. SIPp then listens on a TCP "twin" socket (3PCC,
  ``-3pcc ip:port``); `SippUAC.release` sends one twin command per Call-ID
  (``Call-ID: <id>`` terminated by ESC, the framing SIPp's 3PCC uses), and that call
  goes on (re-INVITE, BYE...). The twin connection stays open for the whole run: SIPp
  exits when it closes.
* Stopping uses SIPp's UDP remote-control socket (``q`` = no new calls, finish the
  running ones; ``Q`` = abort all and exit), which works the same whether SIPp runs
  here, in a network namespace or in a container; a local process is signalled only as
  a last resort.
* ``command_prefix`` runs SIPp elsewhere, e.g. ``["ip", "netns", "exec", "ns1"]`` or
  ``["docker", "exec", "<cid>"]``; the workdir must then be visible to that SIPp at
  ``remote_workdir`` (the same path by default, e.g. a bind mount at the same place).
  The test-side sockets to SIPp (control, twin) come from ``socket_factory`` when SIPp's
  address is only reachable from another namespace.

Verified against Debian's sip-tester 3.6.1 (``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``).
"""

from harness.instruments.sipp.caller import SippUAC
from harness.instruments.sipp.process import (
                                  EXIT_FATAL,
                                  SippError,
                                  SippProcess,
                                  SippTimeout,
                                  SippUAS,
)
from harness.instruments.sipp.results import (
                                  CallEvent,
                                  CallResult,
                                  Request,
                                  Response,
                                  SippSummary,
                                  build_calls,
                                  parse_error_log,
                                  parse_event_log,
                                  parse_message_log,
                                  parse_stat_csv,
                                  start_errors,
                                  summarize,
)
from harness.instruments.sipp.scenarios import (
                                  CALL_USER,
                                  HOLD_MARKER,
                                  HOLD_XML,
                                  HOLDABLE,
                                  REGISTRATIONS,
                                  SCENARIO_DIR,
                                  RegisterScenario,
                                  SCENARIOS,
                                  render_scenario,
                                  scenario_path,
                                  sipp_version,
)

__all__ = [
    "CALL_USER", "REGISTRATIONS", "EXIT_FATAL", "RegisterScenario", "HOLDABLE", "HOLD_MARKER", "HOLD_XML", "SCENARIOS", "SCENARIO_DIR", "CallEvent",
    "CallResult", "Request", "Response", "SippError", "SippProcess", "SippSummary", "SippTimeout",
    "SippUAC", "SippUAS", "build_calls", "parse_error_log", "parse_event_log", "parse_message_log",
    "parse_stat_csv", "render_scenario", "scenario_path", "sipp_version", "start_errors", "summarize",
]
