"""The failover scenario: N held calls, the primary killed, the backup carries every one.

    harness failover --calls 200 [--json] [--backend auto|docker|local] [--freeze]

`run` holds the scenario's steps (`FailoverRun`), `judging` its judging of the
evidence, `metrics` and `result` the figures computed from that evidence alone (pure),
`deadlines` how long each step may take, `prober` the OPTIONS prober around the kill,
`errors` what a run that cannot finish reports. The names below are the package's API.
"""

from harness.experiments.failover.deadlines import (
           DEFAULT_RELEASE_RATE,
           SIP_TRANSACTION_S,
           deadlines,
)
from harness.experiments.failover.errors import (
           FAILURE_KEYS,
           FailoverError,
           error_lines,
           failure_json,
)
from harness.experiments.failover.judging import witnessed
from harness.experiments.failover.metrics import JSON_KEYS, WireBin
from harness.experiments.failover.prober import Prober
from harness.experiments.failover.result import Evidence, FailoverResult, result_from
from harness.experiments.failover.run import FailoverRun, run_failover

__all__ = ["DEFAULT_RELEASE_RATE", "FAILURE_KEYS", "JSON_KEYS", "SIP_TRANSACTION_S", "Evidence",
           "FailoverError", "FailoverResult", "FailoverRun", "Prober", "WireBin", "deadlines",
           "error_lines", "failure_json", "result_from", "run_failover", "witnessed"]
