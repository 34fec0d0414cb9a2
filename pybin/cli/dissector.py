"""``pybin dissector``: the Wireshark/tshark Lua dissector for BIN that ships with pybin.

Wireshark has no dissector for the 1.x BIN protocol, so an operator looking at a
replication capture sees raw UDP. The dissector (``pybin/dissector/opensips_bin.lua``,
package data) names its fields as ``pybin decode --json`` does. This command prints it,
says where the installed copy is (``--path``, for ``tshark -X lua_script:``), or copies
it into Wireshark's personal Lua plugins folder (``--install``).

Where that folder is: Wireshark's user guide ("Plugin folders") documents
``~/.local/lib/wireshark/plugins`` on Unix-like systems and ``%APPDATA%\\Wireshark\\plugins``
on Windows (``$XDG_CONFIG_HOME/wireshark/plugins`` is only an older place still read
for Lua). The installed Wireshark knows best, so when ``tshark`` is on PATH its
``tshark -G folders`` line "Personal Lua Plugins" decides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .common import EXIT_IO, CliError, Output

LUA_NAME = "opensips_bin.lua"
#: the line of ``tshark -G folders`` that names the folder Wireshark loads Lua plugins from
_FOLDERS_KEY = "Personal Lua Plugins"
#: tshark loads every dissector before it answers -G; a hung one must not hang us
_TSHARK_LIMIT = 60


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dissector", help="the Wireshark/tshark Lua dissector for BIN (print, --path, --install)",
                       description="Print the Wireshark Lua dissector for BIN packets, give its path, "
                                   "or install it into Wireshark's personal Lua plugins folder.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--install", action="store_true",
                      help="copy it into Wireshark's personal Lua plugins folder and print where")
    what.add_argument("--path", action="store_true",
                      help="print the path of the copy inside pybin (for tshark -X lua_script:PATH)")
    p.add_argument("--dir", type=Path, metavar="DIR", help="with --install: install into DIR instead")
    p.set_defaults(func=cmd_dissector)


def lua_source() -> Traversable:
    """The dissector inside the installed package (one way to find shipped data)."""
    return files("pybin") / "dissector" / LUA_NAME


def default_plugins_dir() -> Path:
    """Wireshark's documented personal plugins folder, for when tshark cannot say."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "Wireshark" / "plugins"
    return Path.home() / ".local" / "lib" / "wireshark" / "plugins"


def plugins_dir_from_tshark(tshark: str) -> Path | None:
    """The "Personal Lua Plugins" folder ``tshark -G folders`` reports, or None."""
    try:
        done = subprocess.run([tshark, "-G", "folders"], capture_output=True, text=True,
                              timeout=_TSHARK_LIMIT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == _FOLDERS_KEY and value.strip():
            return Path(value.strip())
    return None


def personal_plugins_dir() -> tuple[Path, str]:
    """Where Wireshark loads the user's Lua plugins from, and how we know."""
    tshark = shutil.which("tshark")
    if tshark:
        found = plugins_dir_from_tshark(tshark)
        if found is not None:
            return found, "as `tshark -G folders` reports"
    return default_plugins_dir(), "Wireshark's documented default"


def cmd_dissector(args: argparse.Namespace) -> int:
    source = lua_source()
    if args.dir is not None and not args.install:
        raise CliError("--dir goes with --install")
    if args.path:
        if not isinstance(source, Path) or not source.is_file():
            raise CliError(f"the dissector is not a file on disk here ({source}): "
                           f"use `pybin dissector > {LUA_NAME}`")
        print(source)
        return 0
    try:
        text = source.read_bytes()
    except OSError as err:
        raise CliError(f"cannot read the packaged dissector {source}: {err.strerror or err}", EXIT_IO) from None
    if not args.install:
        out = Output()
        out.write(text)
        out.flush()
        return 0
    folder, how = (args.dir, "the folder given") if args.dir is not None else personal_plugins_dir()
    target = folder / LUA_NAME
    replaced = target.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text)
    except OSError as err:
        raise CliError(f"cannot install into {folder}: {err.strerror or err}", EXIT_IO) from None
    print(target)
    print(f"pybin: {'replaced' if replaced else 'installed'} the BIN dissector in {folder} ({how}); "
          "Wireshark loads it when it starts (Analyze > Reload Lua Plugins in a running one), "
          "tshark on every run", file=sys.stderr)
    return 0
