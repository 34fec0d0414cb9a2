"""Your own SIPp scenario through a real primary/backup cluster, from a plain script.

    python examples/custom_scenario/run_info_call.py [--backend auto|docker|local] [--calls N]

`info_uac.xml` / `info_uas.xml` next to this file are a scenario pair the harness
does not ship: a call with an in-dialog INFO. `CallPair` takes them as a path prefix
(``.../info``), places the calls through the cluster's VIP and parses SIPp's logs per
call; MI then shows what the backup made of the replicated dialogs. Prints one JSON
object; exit status 0 when every call completed and the backup ended every dialog,
1 when not, 2 when no backend can run OpenSIPS here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import live
from harness.backends import BACKEND_CHOICES, choose_backend, default_backend
from harness.base.settings import load_settings
from harness.base.wait import wait_until
from harness.experiments.calls import CallPair

SCENARIO = Path(__file__).resolve().parent / "info"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=default_backend(), choices=BACKEND_CHOICES)
    parser.add_argument("--calls", type=int, default=2)
    args = parser.parse_args(argv)
    settings = load_settings()
    choice = choose_backend(args.backend, settings)
    if choice.kind is None:
        print(f"run_info_call: {choice.reason}", file=sys.stderr)
        return 2
    kind = choice.kind
    # under the temp dir: the docker backend mounts it into SIPp's containers
    with tempfile.TemporaryDirectory(prefix="info-call-") as work:
        with live.start(kind, settings, ("primary", "backup")) as lc:
            cluster = lc.cluster
            summary = CallPair(cluster, SCENARIO, calls=args.calls, workdir=Path(work)).start().wait(60)
            backup = cluster.mi("backup")
            stats = wait_until(lambda: (s := backup.get_statistics())["delete_recv"] >= args.calls and s,
                               timeout=10, what="the backup to end every replicated dialog",
                               alive=cluster.check)
    info_codes = sorted({r.code for c in summary.calls for r in c.responses if r.method == "INFO"})
    report = {
        "backend": kind.name,
        "completed": len(summary.completed),
        "info_codes": info_codes,
        "backup": {k: stats[k] for k in ("create_recv", "update_recv", "delete_recv", "active_dialogs")},
    }
    print(json.dumps(report))
    ok = report["completed"] == args.calls and stats["active_dialogs"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
