"""Config rendering: what each role's opensips.cfg must contain (offline)."""

import pytest

from harness.base.settings import SettingsError, load_settings
from harness.cluster.interfaces import NodeAddresses
from harness.cluster.render import RenderError, cfg_string, render_config

NODE = NodeAddresses(name="primary", ip="10.9.9.11", bin_port=5062, mi_port=8080,
                     sip_ip="10.9.9.100", sip_port=5060)
MPATH = "/prefix/lib64/opensips/modules"


def render(role, settings=None, node=NODE, **kw):
    kw.setdefault("module_path", MPATH)
    return render_config(role, settings or load_settings(use_env=False), node, **kw)


def modparams(text, module, name):
    prefix = f'modparam("{module}", "{name}", '
    return [line[len(prefix):-1] for line in text.splitlines() if line.startswith(prefix)]


def test_primary_listens_on_vip_and_replicates_to_every_destination():
    text = render("primary", replicate_to=["10.9.9.12:5062", ("10.9.9.1", 7000)])
    assert "listen=udp:10.9.9.100:5060" in text.splitlines()
    assert "bin_listen=10.9.9.11:5062" in text.splitlines()
    assert "bin_children=1" in text.splitlines()
    assert modparams(text, "dialog", "replicate_dialogs_to") == ['"10.9.9.12:5062"', '"10.9.9.1:7000"']
    assert modparams(text, "dialog", "accept_replicated_dialogs") == ["1"]
    assert modparams(text, "mi_datagram", "socket_name") == ['"udp:10.9.9.11:8080"']
    assert f'mpath="{MPATH}"' in text


def test_backup_replicates_too_so_it_can_take_over():
    backup = NodeAddresses(name="backup", ip="10.9.9.12", bin_port=5062, mi_port=8080,
                           sip_ip="10.9.9.100", sip_port=5060)
    text = render("backup", node=backup, replicate_to=["10.9.9.11:5062"])
    assert "listen=udp:10.9.9.100:5060" in text.splitlines()  # same VIP as the primary
    assert "bin_listen=10.9.9.12:5062" in text.splitlines()
    assert modparams(text, "dialog", "replicate_dialogs_to") == ['"10.9.9.11:5062"']
    assert modparams(text, "dialog", "accept_replicated_dialogs") == ["1"]


def test_standalone_neither_sends_nor_accepts():
    text = render("standalone", replicate_to=["10.9.9.12:5062"])
    assert modparams(text, "dialog", "replicate_dialogs_to") == []
    assert modparams(text, "dialog", "accept_replicated_dialogs") == ["0"]


def test_script_pieces_the_suite_relies_on():
    text = render("primary")
    for needle in ['loadmodule "sipmsgops.so"', 'loadmodule "uri.so"', 'loadmodule "dialog.so"',
                   'create_dialog("B")', "record_route()", "loose_route()", "has_totag()",
                   'set_dlg_profile("inbound")', 'set_dlg_profile("caller", "$fU")',
                   'set_dlg_flag("3")', "$avp(dlg_timeout) = 7200;", "t_relay()"]:
        assert needle in text, needle
    assert modparams(text, "dialog", "db_mode") == ["0"]
    assert modparams(text, "dialog", "timeout_avp") == ['"$avp(dlg_timeout)"']
    assert modparams(text, "dialog", "profiles_no_value") == ['"inbound"']
    assert modparams(text, "dialog", "profiles_with_value") == ['"caller"']
    assert modparams(text, "dialog", "dlg_match_mode") == ["1"]


def test_acct_var_escaped_for_cfg_string():
    # the value a|b#c\d must reach OpenSIPS intact: the backslash doubled in the cfg
    text = render("primary")
    assert '$dlg_val(acct) = "a|b#c\\\\d";' in text
    assert cfg_string('say "hi" \\') == 'say \\"hi\\" \\\\'
    with pytest.raises(RenderError):
        cfg_string("two\nlines")


def test_settings_flow_into_config():
    s = load_settings({"opensips": {"bin_children": 3, "children": 5},
                       "dialog": {"timeout": 30, "flag": 7},
                       "replication": {"extra_destinations": ["10.9.9.1:9999"]}}, use_env=False)
    text = render("primary", s, replicate_to=["10.9.9.12:5062"])
    assert "bin_children=3" in text and "children=5" in text
    assert "$avp(dlg_timeout) = 30;" in text and 'set_dlg_flag("7")' in text
    assert modparams(text, "dialog", "replicate_dialogs_to") == ['"10.9.9.12:5062"', '"10.9.9.1:9999"']


def test_bad_inputs_are_clear_errors():
    with pytest.raises(RenderError, match="unknown role"):
        render("leader")
    with pytest.raises(RenderError, match="not ip:port"):
        render("primary", replicate_to=["10.9.9.12"])
    with pytest.raises(RenderError, match="itself"):
        render("primary", replicate_to=["10.9.9.11:5062"])
    with pytest.raises(SettingsError, match="module path unknown"):
        render_config("primary", load_settings(use_env=False), NODE)


def test_scale_defaults_reach_config_and_command_line():
    """maxbuffer (the BIN socket's only rcvbuf knob) in the cfg; shm/pkg MB as -m/-M."""
    s = load_settings(use_env=False)
    assert "maxbuffer=4194304" in render("backup", s).splitlines()
    assert s.opensips.argv() == ["-m", "512", "-M", "16"]
    small = load_settings({"opensips": {"maxbuffer": 262144, "shm_mb": 32, "pkg_mb": 2,
                                        "extra_args": ["-b", "262144"]}}, use_env=False)
    assert "maxbuffer=262144" in render("backup", small).splitlines()
    assert small.opensips.argv() == ["-m", "32", "-M", "2", "-b", "262144"]


def test_one_opensips_command_line_for_both_backends():
    """-F -E (never -D: 1.10's dont_fork starts no BIN receiver), the cfg, then -m/-M."""
    from harness.backends.core import opensips_command
    s = load_settings(use_env=False)
    assert opensips_command("/o/sbin/opensips", "/c.cfg", s.opensips) == [
        "/o/sbin/opensips", "-F", "-E", "-f", "/c.cfg", "-m", "512", "-M", "16"]


def test_dialog_create_flags_and_ping_interval_are_settings():
    text = render("primary")
    assert 'create_dialog("B");' in text  # the default: nothing else changes
    assert modparams(text, "dialog", "ping_interval") == ["30"]  # 1.10's own default
    s = load_settings(use_env=False).with_overrides({"dialog": {"create_flags": "BPp",
                                                                "ping_interval": 2}})
    text = render("primary", s)
    assert 'create_dialog("BPp");' in text
    assert modparams(text, "dialog", "ping_interval") == ["2"]


@pytest.mark.parametrize("version", ["1.10.0", "1.10.5", "1.11.0", "1.11.11"])
def test_the_template_speaks_each_branchs_dialog_parameters(version: str) -> None:
    """1.11 removed dialog's timeout_avp (a 1.11 node refuses the config): its lifetime
    goes through $DLG_timeout, set before create_dialog so no extra updated is sent."""
    text = render("primary", release=version)
    if version.startswith("1.10."):
        assert modparams(text, "dialog", "timeout_avp") == ['"$avp(dlg_timeout)"']
        assert "$avp(dlg_timeout) = 7200;" in text and "$DLG_timeout" not in text
    else:
        assert modparams(text, "dialog", "timeout_avp") == []
        assert text.index("$DLG_timeout = 7200;") < text.index('create_dialog("B")')
    assert f"# OpenSIPS {version} -- harness node" in text


# -- 2.1 and usrloc replication ----------------------------------------------------------

USRLOC = {"usrloc": {"replicate": True}}


@pytest.mark.parametrize("version", ["1.10.5", "1.11.11", "2.1.0", "2.1.5"])
def test_transports_are_modules_from_2_1(version: str) -> None:
    """2.1 has no disable_tcp (a 2.1 node refuses the word) and loads UDP as proto_udp;
    1.x keeps its core UDP and turns TCP off."""
    lines = render("primary", release=version).splitlines()
    two = version.startswith("2.")
    assert ("disable_tcp=yes" in lines) is not two
    assert ('loadmodule "proto_udp.so"' in lines) is two
    if two:  # after mpath, which it is loaded from, and before the other modules
        assert lines.index(f'mpath="{MPATH}"') < lines.index('loadmodule "proto_udp.so"') \
            < lines.index('loadmodule "sl.so"')
    assert modparams("\n".join(lines), "dialog", "timeout_avp") == (
        ['"$avp(dlg_timeout)"'] if version.startswith("1.10.") else [])


def test_registrations_are_off_unless_asked_for() -> None:
    text = render("primary", release="1.11.11", replicate_to=["10.9.9.12:5062"])
    assert "usrloc" not in text and "registrar" not in text and "save(" not in text


@pytest.mark.parametrize("version", ["1.11.0", "1.11.11", "2.1.0", "2.1.5"])
@pytest.mark.parametrize("role", ["primary", "backup"])
def test_usrloc_replication_per_role(version: str, role: str) -> None:
    """Both nodes replicate contacts to their peers and accept them, as for dialogs,
    so a backup that took over sends its own registrations back."""
    s = load_settings(USRLOC, use_env=False)
    text = render(role, s, release=version, replicate_to=["10.9.9.12:5062", "10.9.9.1:7000"])
    lines = text.splitlines()
    for module in ("signaling", "usrloc", "registrar"):
        assert f'loadmodule "{module}.so"' in lines
    assert lines.index('loadmodule "usrloc.so"') < lines.index('loadmodule "registrar.so"')
    assert modparams(text, "usrloc", "db_mode") == ["0"]
    assert modparams(text, "usrloc", "timer_interval") == ["5"]
    assert modparams(text, "registrar", "min_expires") == ["0"]
    assert modparams(text, "usrloc", "replicate_contacts_to") == ['"10.9.9.12:5062"', '"10.9.9.1:7000"']
    assert modparams(text, "usrloc", "accept_replicated_contacts") == ["1"]
    # REGISTER saved before anything else an initial request meets, calls to the VIP
    # looked up before a dialog is created
    assert text.index('if (!save("location"))') < text.index('if (is_method("INVITE") && uri == myself)') \
        < text.index('if (!lookup("location"))') < text.index('create_dialog("B")')


def test_standalone_keeps_registrations_to_itself() -> None:
    text = render("standalone", load_settings(USRLOC, use_env=False), release="2.1.5",
                  replicate_to=["10.9.9.12:5062"])
    assert 'if (!save("location"))' in text
    assert modparams(text, "usrloc", "replicate_contacts_to") == []
    assert modparams(text, "usrloc", "accept_replicated_contacts") == []


def test_no_accept_means_no_accepted_contacts_either() -> None:
    s = load_settings({**USRLOC, "replication": {"accept": False}}, use_env=False)
    text = render("backup", s, release="1.11.11", replicate_to=["10.9.9.12:5062"])
    assert modparams(text, "usrloc", "accept_replicated_contacts") == ["0"]


@pytest.mark.parametrize("version", ["1.10.0", "1.10.5"])
def test_usrloc_replication_on_1_10_is_refused_in_one_line(version: str) -> None:
    with pytest.raises(RenderError) as info:
        render("backup", load_settings(USRLOC, use_env=False), release=version)
    assert str(info.value) == (f"node primary runs OpenSIPS {version}, which cannot replicate "
                               "registrations (usrloc replication came with 1.11): turn settings "
                               "usrloc.replicate off or run 1.11 / 2.1")


def test_usrloc_table_and_timers_are_settings() -> None:
    s = load_settings({"usrloc": {"replicate": True, "table": "loc2", "timer_interval": 1,
                                  "min_expires": 3, "default_expires": 60}}, use_env=False)
    text = render("primary", s, release="1.11.11")
    assert 'save("loc2")' in text and 'lookup("loc2")' in text
    assert modparams(text, "usrloc", "timer_interval") == ["1"]
    assert modparams(text, "registrar", "min_expires") == ["3"]
    assert modparams(text, "registrar", "default_expires") == ["60"]


@pytest.mark.parametrize("version", ["1.10.5", "1.11.0", "1.11.11", "2.1.5"])
def test_fr_inv_timeout_reaches_the_script_where_1_11_0_reads_it(version: str) -> None:
    """Left at 0 nothing is said (the release's 120 s; 1.11.0's per-transaction 0). Set,
    the modparam carries it under the branch's name, and 1.11/2.1 set $T_fr_inv_timeout
    before relaying each INVITE: 1.11.0's reply_received arms the timer with that value
    only (d244686dc5f)."""
    plain = render("primary", release=version)
    assert "fr_inv" not in plain
    s = load_settings(use_env=False).with_overrides({"tm": {"fr_inv_timeout": 90}})
    text = render("primary", s, release=version)
    name = "fr_inv_timer" if version.startswith("1.10.") else "fr_inv_timeout"
    assert modparams(text, "tm", name) == ["90"]
    relay = text[text.index("route[relay] {"):]
    if version.startswith("1.10."):  # 1.10 has no $T_fr_inv_timeout (the script would not load)
        assert "$T_fr_inv_timeout" not in text
    else:
        assert relay.index('if (is_method("INVITE"))\n\t\t$T_fr_inv_timeout = 90;') < relay.index("t_relay()")
