"""Settings: YAML defaults, file and dict overrides, type checks (offline)."""

import pytest

from harness.base.settings import (
    Settings,
    SettingsError,
    derive_module_path,
    find_opensips_binary,
    load_settings,
)


def test_defaults_file_matches_dataclass_defaults():
    # defaults.yaml is the source users read; the dataclass defaults must agree
    assert load_settings(use_env=False) == Settings()


def test_dict_override_changes_only_named_keys():
    base = load_settings(use_env=False)
    s = base.with_overrides({"opensips": {"bin_children": 2}, "timeouts": {"mi": 5}})
    assert s.opensips.bin_children == 2 and s.timeouts.mi == 5.0
    assert s.opensips.children == base.opensips.children
    assert base.opensips.bin_children == 1  # the original is untouched


def test_file_override_and_env(tmp_path, monkeypatch):
    f = tmp_path / "o.yaml"
    f.write_text("ports:\n  mi: 9090\nreplication:\n  extra_destinations: ['10.0.0.1:7000']\n")
    s = load_settings(f, use_env=False)
    assert s.ports.mi == 9090 and s.replication.extra_destinations == ("10.0.0.1:7000",)
    monkeypatch.setenv("HARNESS_SETTINGS", str(f))
    assert load_settings().ports.mi == 9090
    assert load_settings({"ports": {"mi": 1}}).ports.mi == 1


@pytest.mark.parametrize("override, message", [
    ({"opensips": {"bogus": 1}}, "unknown setting 'opensips.bogus'"),
    ({"nope": {}}, "unknown setting 'nope'"),
    ({"opensips": {"children": "two"}}, "must be an integer"),
    ({"replication": {"accept": 1}}, "must be true or false"),
    ({"replication": {"extra_destinations": "x"}}, "must be a list"),
    ({"opensips": 3}, "must be a mapping"),
    ({"opensips": {"binary": 5}}, "string or null"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(override, use_env=False)


def test_bad_yaml_is_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: [\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(f, use_env=False)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", use_env=False)


def test_to_dict_round_trips():
    s = load_settings({"opensips": {"extra_args": ["-m", "32"]}}, use_env=False)
    assert Settings().with_overrides(s.to_dict()) == s


def test_binary_lookup_and_module_path(tmp_path, monkeypatch):
    prefix = tmp_path / "osips"
    (prefix / "sbin").mkdir(parents=True)
    binary = prefix / "sbin" / "opensips"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    mods = prefix / "lib64" / "opensips" / "modules"
    mods.mkdir(parents=True)
    (mods / "dialog.so").write_text("")
    monkeypatch.setenv("OPENSIPS_BIN", str(binary))
    assert find_opensips_binary() == str(binary)
    assert derive_module_path(str(binary)) == str(mods)
    monkeypatch.setenv("OPENSIPS_BIN", str(tmp_path / "nope"))
    with pytest.raises(SettingsError, match="not an executable"):
        find_opensips_binary()
    monkeypatch.delenv("OPENSIPS_BIN")
    monkeypatch.setenv("PATH", str(prefix / "sbin"))
    assert find_opensips_binary() == str(binary)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SettingsError, match="OPENSIPS_BIN"):
        find_opensips_binary()
    with pytest.raises(SettingsError, match="no OpenSIPS modules"):
        derive_module_path(str(tmp_path / "sbin" / "opensips"))
