"""``harness matrix``: the behaviour checks over releases and pairs, as reports.

    harness matrix --backend local --opensips 1.10.2=/opt/a/opensips --opensips 1.10.5=/opt/b/opensips
    harness matrix --backend docker --versions 1.10.0,1.10.5,1.11.11 [--pairs all] [--json]

Progress goes to stderr, one line per cell; the reports (matrix.md, matrix.json, matrix.html,
matrix.junit.xml) go to ``--out``; ``--json`` also prints matrix.json's object on
stdout. Exit 0 when every cell is ``same`` or ``explained`` (cells of checks the backend
cannot run are listed as ``not run``), 1 when a cell is unexplained, unstable or an
error, or the baseline deviates from what 1.10.5's code does; 2 for arguments it
cannot use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.backends import KINDS
from harness.base.errors import UsageError
from harness.base.releases import BASELINE
from harness.base.settings import load_settings
from harness.experiments.matrix.predictions import assess
from harness.experiments.matrix.predictions import load as load_predictions
from harness.experiments.matrix.predictions import to_markdown as predictions_markdown
from harness.experiments.matrix.registry import select_checks
from harness.experiments.matrix.runner import plan_pairs, run_matrix, sort_labels


def add_parser(sub: Any) -> None:
    p = sub.add_parser("matrix", help="run the behaviour checks over releases and primary/backup pairs")
    p.set_defaults(func=cmd_matrix)
    p.add_argument("--backend", choices=tuple(KINDS), default="local",
                   help="local: binaries given with --opensips; docker: images given with --versions")
    p.add_argument("--opensips", action="append", default=[], metavar="V=PATH",
                   help="a local opensips binary and its label (repeatable; PATH alone: labelled "
                        "with the version it reports)")
    p.add_argument("--versions", metavar="LIST",
                   help="docker: comma-separated releases (or all, 1.10, 1.11) whose images to use, "
                        "private labels of ours, or whole image names (repo/name:tag)")
    p.add_argument("--pairs", default="default",
                   help="default (each with itself, baseline with each both ways), all, "
                        "or P:B,P:B (primary:backup)")
    p.add_argument("--checks", action="append", metavar="GLOB",
                   help="only checks matching (repeatable), e.g. 'sip.*'")
    p.add_argument("--out", default="matrix", help="where matrix.md/json/junit go (default ./matrix)")
    p.add_argument("--settings", help="YAML file overriding harness/base/defaults.yaml")
    p.add_argument("--jobs", type=int, default=1,
                   help="pairs run at once after the baseline, each on its own network (default 1)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every check this many times per pair; a check whose observations "
                        "differ is unstable (fails the run) with the values seen (default 1)")
    p.add_argument("--predictions", metavar="YAML",
                   help="what the releases were predicted to show (docs/matrix/predictions.yaml): "
                        "matrix.md says which predictions held")
    p.add_argument("--json", action="store_true", help="print the matrix.json object on stdout")


def progress(line: str) -> None:
    print(f"matrix: {line}", file=sys.stderr, flush=True)


def cmd_matrix(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.repeat < 1:
        raise UsageError("--jobs and --repeat must be at least 1")
    kind = KINDS[args.backend]
    if kind.supplies == "binary":
        if args.versions:
            raise UsageError(f"--versions is for a backend of images; {kind.name} takes --opensips V=PATH")
        if not args.opensips:
            raise UsageError(f"--backend {kind.name} needs --opensips V=PATH (one per release, "
                             f"the baseline {BASELINE} among them)")
        named = args.opensips
    else:
        if args.opensips:
            raise UsageError(f"--opensips is for a backend of binaries; {kind.name} takes --versions")
        named = [args.versions or BASELINE]
    if args.settings and not Path(args.settings).is_file():
        raise UsageError(f"--settings {args.settings}: no such file")
    predictions = load_predictions(Path(args.predictions)) if args.predictions else []
    builds = kind.builds(named)
    labels = sort_labels(builds)
    builds = {label: builds[label] for label in labels}
    pairs = plan_pairs(labels, args.pairs)
    checks = select_checks(args.checks)
    settings = load_settings(args.settings)
    progress(f"{len(checks)} checks x {len(pairs)} pairs on the {kind.name} backend; "
             f"builds: {', '.join(b.describe() for b in builds.values())}")
    run = run_matrix(builds, pairs, checks, kind, settings, progress=progress, jobs=args.jobs,
                     repeat=args.repeat)
    from harness.experiments.matrix.report import named_defects, summary, to_json, write_reports

    appendix = ""
    if predictions:
        assessments = assess(to_json(run), predictions)
        appendix = predictions_markdown(assessments)
        held = sum(a.verdict == "held" for a in assessments)
        progress(f"predictions: {held} of {len(assessments)} held (matrix.md lists each)")
    paths = write_reports(run, Path(args.out), appendix)
    s = summary(run)
    named = {(n.check, n.primary, n.backup) for n in named_defects(run)}
    defects = f" ({len(named)} failing cell(s) where a node with a named upstream defect died, stalled or logged its mark)" if named else ""
    progress(f"done in {run.seconds / 60:.1f} min: {s['unexplained']} unexplained, {s['unstable']} "
             f"unstable, {s['error']} error, {s['not run']} not run, {s['baseline_deviations']} "
             f"baseline deviation(s){defects}; reports: {', '.join(str(p) for p in paths.values())}")
    if args.json:
        print(json.dumps(to_json(run)), flush=True)
    return 1 if run.failed else 0
