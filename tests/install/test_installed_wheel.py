"""The built wheel works outside the checkout: pybin alone, and the harness extra.

A fresh virtual environment under tmp_path (no checkout on sys.path, cwd elsewhere)
gets the wheel built from this tree. pybin must install and decode a capture with no
harness dependency; the ``harness`` command and the pytest plugin must then step aside
politely; with the ``harness`` extra the harness must find its templates, recipes and
scenarios inside the package and run a real failover where OpenSIPS is available.
Dependencies come from the package index, so every subprocess has a time limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness.backends.local.backend import local_backend_unavailable

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "corpus" / "vectors" / "opensips-1.10.5-basic-calls.pcap"
#: building (Cython) and installing from the index: minutes, not forever
LIMIT = 900


def _run(argv: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=LIMIT, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], cwd=out)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = out.glob("pybin_opensips-*.whl")
    return wheel


def _fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin"


def test_pybin_installs_alone_and_decodes_a_capture(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "venv")
    installed = _run([str(bin_dir / "pip"), "install", "--quiet", str(wheel), "pytest"], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    names = _run([str(bin_dir / "python"), "-m", "pip", "list", "--format", "json"], cwd=tmp_path)
    dists = {d["name"].lower() for d in json.loads(names.stdout)}
    assert {"dpkt", "pybin-opensips"} <= dists
    assert not dists & {"jinja2", "pyyaml", "testcontainers", "docker"}

    decoded = _run([str(bin_dir / "pybin"), "decode", str(CAPTURE)], cwd=tmp_path)
    assert decoded.returncode == 0, decoded.stderr
    lines = decoded.stdout.splitlines()
    assert lines and all(" dialog " in line or " cmd=" in line for line in lines)
    assert sum(" dialog created " in line for line in lines) >= 1

    # the Wireshark dissector is package data: the wheel must carry it
    lua = (ROOT / "pybin" / "dissector" / "opensips_bin.lua").read_text()
    printed = _run([str(bin_dir / "pybin"), "dissector"], cwd=tmp_path)
    assert printed.returncode == 0 and printed.stdout == lua, printed.stderr
    path = _run([str(bin_dir / "pybin"), "dissector", "--path"], cwd=tmp_path)
    assert path.returncode == 0 and Path(path.stdout.strip()).read_text() == lua
    assert not Path(path.stdout.strip()).is_relative_to(ROOT)
    installed = _run([str(bin_dir / "pybin"), "dissector", "--install", "--dir", str(tmp_path / "plugins")],
                     cwd=tmp_path)
    assert installed.returncode == 0 and (tmp_path / "plugins" / "opensips_bin.lua").read_text() == lua

    harness = _run([str(bin_dir / "harness"), "run"], cwd=tmp_path)
    assert harness.returncode == 2
    assert harness.stderr == ("harness: needs jinja2, pyyaml, pytest-xdist, which come with the "
                              "harness extra: pip install 'pybin-opensips[harness]'\n")

    # the pytest11 entry point must not break the user's own pytest
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    assert 1 + 1 == 2\n")
    theirs = _run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
                  cwd=tmp_path)
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert "1 passed" in theirs.stdout


_LOCAL_MISSING = local_backend_unavailable() or (
    None if shutil.which("sipp") and shutil.which("tcpdump") else "needs sipp and tcpdump on PATH")


@pytest.mark.live
@pytest.mark.backend_only("local")
def test_the_harness_extra_runs_from_the_installed_package(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "venv")
    installed = _run([str(bin_dir / "pip"), "install", "--quiet", f"{wheel}[harness]"], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    where = _run([str(bin_dir / "python"), "-c",
                  "from harness.base.resources import package_path, shipped, checkout_root;"
                  "print(shipped('containers', 'opensips', 'Dockerfile'));"
                  "print(shipped('opensips-cfg', 'opensips.cfg.j2'));"
                  "print(shipped('scenarios', 'rejected_uac.xml'));"
                  "print(package_path('conformance', 'test_failover.py'));"
                  "print(package_path('experiments', 'matrix', 'known-differences.yaml'));"
                  "print(package_path('experiments', 'matrix', 'matrix.html.j2'));"
                  "print(package_path('experiments', 'failover', 'report.html.j2'));"
                  "print(package_path('base', 'defaults.yaml'));"
                  "print(checkout_root())"], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    *shipped, checkout = where.stdout.splitlines()
    assert checkout == "None"
    assert all(p.startswith(str(tmp_path / "venv")) for p in shipped), shipped

    helped = _run([str(bin_dir / "harness"), "image", "build", "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: harness image build ")

    if _LOCAL_MISSING:
        pytest.skip(f"no local failover from the installed package: {_LOCAL_MISSING}")

    # the version matrix reads its table of known differences and its own scenarios
    # (the rejected-call pair) from the package: one check, the baseline pair
    binary = shutil.which(os.environ.get("OPENSIPS_BIN", "opensips")) or os.environ.get("OPENSIPS_BIN", "")
    matrix = _run([str(bin_dir / "harness"), "matrix", "--backend", "local", "--opensips", binary,
                   "--checks", "sip.rejected", "--out", str(tmp_path / "matrix"), "--json"], cwd=tmp_path)
    assert matrix.returncode == 0, matrix.stderr[-2000:]
    report = json.loads(matrix.stdout)
    assert [(r["check"], r["outcome"]) for r in report["results"]] == [("sip.rejected", "same")]
    assert (tmp_path / "matrix" / "matrix.md").is_file()
    failover = _run([str(bin_dir / "harness"), "failover", "--backend", "local", "--calls", "20", "--json"],
                    cwd=tmp_path)
    assert failover.returncode == 0, failover.stderr[-2000:]
    figures = json.loads(failover.stdout)
    assert figures["calls"] == 20
    assert figures["lost"] == 0
    assert figures["backend"] == "local"

    # the shipped conformance checks, run by the installed gate (one selected, to stay
    # short: --allow-partial, since the other categories of check then run nothing)
    gate = _run([str(bin_dir / "harness"), "run", "--backend", "local", "-n", "0", "--allow-partial",
                 "--artifacts", str(tmp_path / "artifacts"), "--", "-k",
                 "test_a_call_replicates and not ul_packet"], cwd=tmp_path)
    assert gate.returncode == 0, gate.stdout[-2000:] + gate.stderr[-2000:]
    summary = (tmp_path / "artifacts" / "summary.md").read_text()
    assert "1 passed, 0 failed, 0 errors" in summary
    assert "Live checks: 1 of 1 ran (byte-exact 0, parity 0, robustness 0, failover 0, behaviour 0), " \
        "0 skipped" in summary
    assert re.search(r"^\| 1\.10\.\d+\S* \| local \| `/\S+` \| — \|$", summary, re.M), summary
    assert not list((tmp_path / "venv").glob("lib/*/site-packages/harness/conformance/.pytest_cache"))
