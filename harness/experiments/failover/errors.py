"""How a failover run that could not finish reports what it saw: `FailoverError` and its JSON."""

from __future__ import annotations

from harness.base.errors import HarnessError
from harness.base.wait import WaitTimeout
from harness.cluster.interfaces import NodeDied
from harness.instruments import node_log
from harness.instruments.mi_replies import MIError
from harness.instruments.sipp import SippError


class FailoverError(HarnessError, RuntimeError):
    """The scenario could not be run (calls not set up, no backup...); not a loss.

    ``seen``: what the run observed until then (`FAILURE_KEYS`; see `failure_json`).
    """

    def __init__(self, message: str, seen: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.seen: dict[str, object] = dict(seen or {})


#: the JSON of a run that could not finish, in this order: the one-line cause (and the
#: rest of a multi-line one), the step it failed in, then whatever figures exist by then
FAILURE_KEYS = ("error", "error_detail", "step", "calls", "calls_held", "setup_rate", "backend",
                "mode", "elapsed_s", "deadline_s", "timed_out", "missing_on_backup",
                "backup_alive", "backup_shm_used_idle", "backup_shm_used_before",
                "primary_errors", "backup_errors", "artifacts")


def failure_json(error: BaseException | str, /, **seen: object) -> dict[str, object]:
    """The JSON object of a failed run: ``error`` (one line), then every `FAILURE_KEYS`
    key (None or empty where nothing was seen); ``seen`` overrides, e.g. from `FailoverError`."""
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, (str, FailoverError, NodeDied, SippError, WaitTimeout, MIError)):
        text = f"{type(error).__name__}: {text}"
    lines = text.splitlines()
    out: dict[str, object] = {key: None for key in FAILURE_KEYS}
    out.update(error_detail=[], timed_out=[], primary_errors=[], backup_errors=[])
    out.update({k: v for k, v in seen.items() if k in FAILURE_KEYS})
    detail = [ln for ln in lines[1:21] if ln.strip()]
    out["error"], out["error_detail"] = lines[0], detail or out["error_detail"]
    return out




def error_lines(log: str) -> list[str]:
    """OpenSIPS's ERROR/CRITICAL/ALERT records of a log, in order, as written."""
    return [r.full for r in node_log.errors(log)]

