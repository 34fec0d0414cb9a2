"""A user's own config template: rendering, the parser, each one-line refusal (offline).

`opensips -c` is replaced by a fake binary here; tests/live/test_user_config_live.py
runs the real one and a failover with the example template.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.backends import KINDS
from harness.base.settings import load_settings
from harness.cli import main
from harness.cluster.interfaces import NodeAddresses
from harness.cluster.render import PLACEHOLDERS, render_config
from harness.cluster.user_config import (
    UserConfigError,
    check_user_config,
    first_error,
    missing_pieces,
    parse_config,
    placeholder_table,
    strip_comments,
)
from harness.live import preflight

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "user-config" / "opensips.cfg.j2"
NO_ACCEPT = ROOT / "examples" / "user-config" / "no-accept.cfg.j2"
NODE = NodeAddresses("backup", "10.9.9.12", 5062, 8080, "10.9.9.100", 5060)
PRIMARY = NodeAddresses("primary", "10.9.9.11", 5062, 8080, "10.9.9.100", 5060)

GOOD = """
listen=udp:10.9.9.100:5060
bin_listen=10.9.9.12:5062
loadmodule "dialog.so"
loadmodule "mi_datagram.so"
modparam("mi_datagram", "socket_name", "udp:10.9.9.12:8080")
modparam("dialog", "replicate_dialogs_to", "10.9.9.11:5062")
modparam("dialog", "accept_replicated_dialogs", 1)
"""


def settings_with(template: Path):
    return load_settings(use_env=False).with_overrides({"opensips": {"config": str(template)}})


# -- the parser ---------------------------------------------------------------------------

def test_comments_go_but_hashes_inside_strings_stay():
    text = 'a="x#y" # gone\nb=\'p/*q*/\' /* gone\n too */ c=1\n'
    assert strip_comments(text) == 'a="x#y" \nb=\'p/*q*/\' \n c=1\n'


def test_parser_reads_both_quote_styles_any_case_and_paths():
    cfg = parse_config("""
        LoadModule '/usr/lib/opensips/modules/Dialog.so'
        loadmodule "mi_datagram.so"  # loadmodule "tm.so"
        /* loadmodule "rr.so" */
        modparam('DIALOG', 'Accept_Replicated_Dialogs', 1)
        modparam("dialog|tm", "replicate_dialogs_to", '10.0.0.2:5062')
        bin_listen = 10.0.0.1:5062
    """)
    assert cfg.modules == {"dialog", "mi_datagram"}
    assert cfg.params("dialog", "accept_replicated_dialogs") == ["1"]
    assert cfg.params("dialog", "replicate_dialogs_to") == ["10.0.0.2:5062"]  # regex module
    assert cfg.params("tm", "accept_replicated_dialogs") == []
    assert cfg.globals == {"bin_listen": ["10.0.0.1:5062"]}


def test_a_complete_config_misses_nothing():
    assert missing_pieces(GOOD, "backup", NODE) == []


@pytest.mark.parametrize("drop, role, message", [
    ('loadmodule "dialog.so"', "backup",
     'the dialog module is not loaded (loadmodule "dialog.so" is missing)'),
    ('loadmodule "mi_datagram.so"', "backup",
     'the harness cannot reach MI (loadmodule "mi_datagram.so" is missing)'),
    ('modparam("mi_datagram", "socket_name", "udp:10.9.9.12:8080")', "backup",
     'the harness cannot reach MI (modparam("mi_datagram", "socket_name", "{{ mi_socket }}") is missing)'),
    ("listen=udp:10.9.9.100:5060", "backup",
     "the backup does not listen for SIP on the VIP (listen=udp:{{ vip }}:{{ sip_port }} is missing)"),
    ("bin_listen=10.9.9.12:5062", "backup",
     "the backup has no BIN receiver (bin_listen={{ bin_listen }} is missing)"),
    ('modparam("dialog", "accept_replicated_dialogs", 1)', "backup",
     'the backup does not accept replicated dialogs '
     '(modparam("dialog", "accept_replicated_dialogs", 1) is missing)'),
    ('modparam("dialog", "replicate_dialogs_to", "10.9.9.11:5062")', "primary",
     'the primary does not replicate dialogs (modparam("dialog", "replicate_dialogs_to", '
     '"{{ dest }}") for each of replicate_to is missing)'),
])
def test_each_missing_piece_is_named(drop, role, message):
    text = GOOD.replace(drop, "# " + drop)  # commented out counts as missing
    node = NODE if role == "backup" else PRIMARY.__class__("primary", "10.9.9.12", 5062, 8080,
                                                           "10.9.9.100", 5060)
    assert missing_pieces(text, role, node) == [message]


def test_accept_set_to_zero_is_not_accepting_and_a_wrong_mi_socket_is_named():
    text = GOOD.replace('dialogs", 1)', 'dialogs", 0)').replace("udp:10.9.9.12:8080", "udp:127.0.0.1:8080")
    assert missing_pieces(text, "backup", NODE) == [
        "the backup's MI listens on udp:127.0.0.1:8080, the harness sends MI to udp:10.9.9.12:8080 "
        '(use "{{ mi_socket }}")',
        'the backup does not accept replicated dialogs (modparam("dialog", "accept_replicated_dialogs", 1) is missing)',
    ]


@pytest.mark.parametrize("listen", ["listen=10.9.9.100", "listen = UDP:10.9.9.100:5060",
                                    "listen=udp:10.0.0.1:5060\nlisten=10.9.9.100:5060"])
def test_any_spelling_of_the_vip_socket_is_a_sip_listener(listen):
    text = GOOD.replace("listen=udp:10.9.9.100:5060", listen)
    assert missing_pieces(text, "backup", NODE) == []


@pytest.mark.parametrize("listen", ["listen=tcp:10.9.9.100:5060", "listen=udp:10.9.9.100:5070"])
def test_tcp_or_another_port_on_the_vip_is_not_the_sip_socket(listen):
    text = GOOD.replace("listen=udp:10.9.9.100:5060", listen)
    assert missing_pieces(text, "backup", NODE) == [
        "the backup does not listen for SIP on the VIP (listen=udp:{{ vip }}:{{ sip_port }} is missing)"]


def test_a_bin_receiver_elsewhere_is_named():
    text = GOOD.replace("bin_listen=10.9.9.12:5062", "bin_listen=127.0.0.1:5062")
    assert missing_pieces(text, "backup", NODE) == [
        "the backup's BIN receiver is on 127.0.0.1:5062, its peers replicate to 10.9.9.12:5062 "
        "(use bin_listen={{ bin_listen }})"]


def test_a_primary_replicating_elsewhere_is_told_its_backup_is_missing():
    text = GOOD.replace("10.9.9.11:5062", "10.9.9.99:5062")
    assert missing_pieces(text, "primary", NODE, peers=["10.9.9.11:5062"]) == [
        "the primary does not replicate to its backup 10.9.9.11:5062 "
        "(it replicates to 10.9.9.99:5062; loop over {{ replicate_to }})"]


# -- rendering a user's template ---------------------------------------------------------

def test_render_config_uses_the_users_template_with_every_placeholder(tmp_path):
    template = tmp_path / "mine.cfg.j2"
    template.write_text("".join(f"{name}={{{{ {name} }}}}\n" for name, _ in PLACEHOLDERS if name != "s")
                        + "children={{ s.opensips.children }}\n")
    text = render_config("primary", settings_with(template), PRIMARY,
                         replicate_to=["10.9.9.12:5062"], module_path="/m")
    assert text.splitlines() == [
        "role=primary", "name=primary", "vip=10.9.9.100", "sip_port=5060", "node_ip=10.9.9.11",
        "bin_port=5062", "bin_listen=10.9.9.11:5062", "mi_port=8080", "mi_socket=udp:10.9.9.11:8080",
        "replicate_to=['10.9.9.12:5062']", "accept=True", "module_path=/m", "release=1.10.5", "children=2"]


@pytest.mark.parametrize("body, message", [
    ("listen={{ vip_address }}\n",
     "config t.j2: 'vip_address' is undefined: not a placeholder the harness defines "
     "(role, name, vip, sip_port, node_ip, bin_port, bin_listen, mi_port, mi_socket, "
     "replicate_to, accept, module_path, release, s)"),
    ("{% if role %}\n", "config t.j2: line 1: Unexpected end of template. Jinja was looking for "
                         "the following tags: 'elif' or 'else' or 'endif'. The innermost block "
                         "that needs to be closed is 'if'."),
])
def test_template_errors_are_one_line_naming_the_problem(tmp_path, body, message):
    (tmp_path / "t.j2").write_text(body)
    with pytest.raises(UserConfigError) as info:
        check_user_config(settings_with(tmp_path / "t.j2"), ["primary"], None)
    assert info.value.lines == [message]


def test_the_example_passes_the_text_checks_and_says_where_c_did_not_run():
    note = check_user_config(settings_with(EXAMPLE), ["primary", "backup", "standalone"], None)
    assert note == ("config opensips.cfg.j2: renders and replicates; opensips -c not run "
                    "(no binary or image here)")


def test_the_example_without_accept_is_refused_in_one_line():
    with pytest.raises(UserConfigError) as info:
        check_user_config(settings_with(NO_ACCEPT), ["primary", "backup"], None)
    assert info.value.lines == [
        'config no-accept.cfg.j2: the backup does not accept replicated dialogs '
        '(modparam("dialog", "accept_replicated_dialogs", 1) is missing)']


# -- opensips -c, faked ------------------------------------------------------------------

C_OUTPUT = """\
Nov 30 13:38:52 [17788] ERROR:core:yyparse: module 'dialogx.so' not found in '/m/'
Nov 30 13:38:52 [17788] CRITICAL:core:yyerror: parse error in config file /tmp/x.cfg, line 32, column 13-14: failed to load module
"""


def test_first_error_of_opensips_c_is_kept_and_parse_errors_give_their_line():
    assert first_error(C_OUTPUT) == "module 'dialogx.so' not found in '/m/'"
    assert first_error(C_OUTPUT.splitlines()[1]) == "line 32: failed to load module"
    assert first_error("Listening on\nconfig file ok, exiting...\n") is None


def fake_opensips(tmp_path: Path, script: str) -> Path:
    binary = tmp_path / "sbin" / "opensips"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n" + script)
    binary.chmod(0o755)
    modules = tmp_path / "lib64" / "opensips" / "modules"
    modules.mkdir(parents=True)
    (modules / "dialog.so").write_text("")
    return binary


def test_opensips_c_refusal_is_one_line_naming_the_role(tmp_path):
    binary = fake_opensips(tmp_path, f"cat >&2 <<'EOF'\n{C_OUTPUT}EOF\nexit 255\n")
    settings = settings_with(EXAMPLE).with_overrides({"opensips": {"binary": str(binary)}})
    with pytest.raises(UserConfigError) as info:
        check_user_config(settings, ["primary", "backup"], KINDS["local"].config_check(settings))
    assert info.value.lines == ["config opensips.cfg.j2: opensips -c refuses the rendered primary "
                                "config: module 'dialogx.so' not found in '/m/'"]


def test_opensips_c_is_given_the_rendered_file(tmp_path):
    seen = tmp_path / "seen.cfg"
    binary = fake_opensips(tmp_path, f'cat "$3" >> {seen}\n')
    settings = settings_with(EXAMPLE).with_overrides({"opensips": {"binary": str(binary)}})
    note = check_user_config(settings, ["primary", "backup"], KINDS["local"].config_check(settings))
    assert note == ("config opensips.cfg.j2: renders, replicates and passes opensips -c "
                    "(the local binary) for primary, backup")
    text = seen.read_text()
    assert text.count("bin_listen=192.0.2.10:5062") == 1 and text.count("bin_listen=192.0.2.11:5062") == 1
    assert f'mpath="{tmp_path}/lib64/opensips/modules"' in text


# -- the command line and the docs -------------------------------------------------------

def test_failover_with_the_no_accept_example_exits_1_before_any_node(capsys, monkeypatch):
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")  # nothing could start anyway
    code = main(["failover", "--backend", "local", "--config", str(NO_ACCEPT), "--calls", "20"])
    assert code == 1
    assert capsys.readouterr().err == (
        'harness: config no-accept.cfg.j2: the backup does not accept replicated dialogs '
        '(modparam("dialog", "accept_replicated_dialogs", 1) is missing)\n')


def test_a_missing_config_file_is_one_line(capsys):
    assert main(["up", "--config", "nowhere.cfg.j2"]) == 1
    assert capsys.readouterr().err == "harness: config nowhere.cfg.j2: no such file\n"


def test_preflight_without_config_changes_nothing():
    settings = load_settings(use_env=False)
    assert preflight(settings, None, ["primary"], "local") == (settings, None)


def test_readme_and_docstring_carry_the_placeholder_table():
    import harness.cluster.user_config as module

    table = placeholder_table()
    assert table.count("\n") == len(PLACEHOLDERS) + 1
    assert table in (module.__doc__ or "")
    assert table in (ROOT / "README.md").read_text()
    assert re.search(r"^\| `\{\{ mi_socket \}\}` \| `udp:node_ip:mi_port`", table, re.M)


def test_run_checks_the_config_once_and_passes_it_to_pytest(monkeypatch, capsys):
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    seen = {}

    def fake_gate(backend, artifacts, workers, pytest_args, say, **options):
        seen.update(backend=backend, pytest_args=list(pytest_args), **options)
        return 0

    monkeypatch.setattr("harness.cli.run.run_gate", fake_gate)
    assert main(["run", "--backend", "local", "--config", str(EXAMPLE), "--", "-k", "failover"]) == 0
    assert seen == {"backend": "local", "allow_offline": False, "allow_partial": False,
                    "pytest_args": ["--opensips-config", str(EXAMPLE), "-k", "failover"]}
    assert capsys.readouterr().err == ("harness: config opensips.cfg.j2: renders and replicates; "
                                       "opensips -c not run (no binary or image here)\n")


@pytest.mark.parametrize("command", ["up", "run", "failover", "record"])
def test_config_is_a_shared_option(command):
    from harness.cli import build_parser

    assert build_parser().parse_args([command, "--config", "mine.cfg.j2"]).config == "mine.cfg.j2"
