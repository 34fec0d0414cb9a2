"""``pybin dissector``: prints the packaged Lua, gives its path, installs it where Wireshark
loads personal Lua plugins from; failures are one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pybin.cli import main
from pybin.cli.dissector import LUA_NAME, lua_source

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "pybin" / "dissector" / LUA_NAME
REINVITE = ROOT / "tests" / "corpus" / "recorded" / "reinvite" / "capture.pcap"
TSHARK = shutil.which("tshark")


def test_it_prints_the_packaged_dissector(capsysbinary) -> None:
    assert main(["dissector"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == LUA.read_bytes() == lua_source().read_bytes() and err == b""
    assert out.startswith(b"-- Wireshark dissector for OpenSIPS")


def test_path_names_the_file_tshark_can_load(capsys) -> None:
    assert main(["dissector", "--path"]) == 0
    out, _ = capsys.readouterr()
    assert Path(out.strip()).read_bytes() == LUA.read_bytes()


def test_install_into_a_given_folder_makes_it_and_prints_the_file(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "made" / "here"
    assert main(["dissector", "--install", "--dir", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{folder / LUA_NAME}\n"
    assert (folder / LUA_NAME).read_bytes() == LUA.read_bytes()
    assert "installed the BIN dissector" in err
    assert main(["dissector", "--install", "--dir", str(folder)]) == 0  # again: an upgrade
    assert "replaced" in capsys.readouterr().err


def test_without_tshark_install_uses_wiresharks_documented_folder(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["dissector", "--install"]) == 0
    out, err = capsys.readouterr()
    expected = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / LUA_NAME
    assert out == f"{expected}\n" and expected.read_bytes() == LUA.read_bytes()
    assert "documented default" in err


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed: cannot ask it where its plugins go")
def test_with_tshark_install_goes_where_tshark_loads_it_from(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert main(["dissector", "--install"]) == 0
    out, err = capsys.readouterr()
    assert "tshark -G folders" in err
    installed = Path(out.strip())
    assert installed.read_bytes() == LUA.read_bytes()
    # tshark, with no -X option, now dissects BIN on its own
    env = {**os.environ, "HOME": str(tmp_path)}
    shown = subprocess.run([TSHARK, "-r", str(REINVITE), "-Y", "bin.dialog"], capture_output=True, text=True,
                           env=env, timeout=120, check=True)
    lines = shown.stdout.splitlines()
    assert len(lines) == 8 and all(" BIN " in line and " dialog " in line for line in lines)


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["dissector", "--dir", "x"], 2, "pybin: --dir goes with --install\n"),
    (["dissector", "--install", "--dir", "{file}/sub"], 3, "pybin: cannot install into {file}/sub: Not a directory\n"),
])
def test_failures_are_one_line(capsys, tmp_path: Path, argv: list[str], code: int, message: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    assert main([a.format(file=file) for a in argv]) == code
    out, err = capsys.readouterr()
    assert out == "" and err == message.format(file=file)
