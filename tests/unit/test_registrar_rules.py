"""pybin.registrar_rules: which usrloc backup rule holds in which release, and why."""

from __future__ import annotations

import re

import pytest

from pybin.registrar import Registrar
from pybin.registrar_rules import BASELINE, CHANGES, RELEASES, RULE_NAMES, rules_for
from pybin.rules import in_range

#: release → the rules that differ from 1.11.11's, read in each tag's sources
EXPECTED = {
    "1.11.0": {"refuses_foreign_socket", "takes_stale_updates", "keeps_call_id_on_update", "stores_unparsable_contact"},
    "1.11.2": {"refuses_foreign_socket", "takes_stale_updates", "keeps_call_id_on_update", "stores_unparsable_contact"},
    "1.11.3": {"refuses_foreign_socket", "takes_stale_updates", "stores_unparsable_contact"},
    "1.11.5": {"refuses_foreign_socket", "takes_stale_updates", "stores_unparsable_contact"},
    "1.11.6": {"refuses_foreign_socket", "takes_stale_updates"},
    "1.11.8": {"refuses_foreign_socket", "takes_stale_updates"},
    "1.11.9": {"refuses_foreign_socket"},
    "1.11.10": set(),
    "1.11.11": set(),
    "2.1.0": {"refuses_foreign_socket", "takes_stale_updates", "stores_unparsable_contact"},
    "2.1.1": {"refuses_foreign_socket", "takes_stale_updates", "stores_unparsable_contact"},
    "2.1.2": {"refuses_foreign_socket", "takes_stale_updates"},
    "2.1.4": {"refuses_foreign_socket", "takes_stale_updates"},
    "2.1.5": {"refuses_foreign_socket"},
}


def test_releases_are_the_tags_with_usrloc_replication() -> None:
    assert RELEASES[0] == "1.11.0" and RELEASES[11] == "1.11.11" and RELEASES[-1] == "2.1.5" and len(RELEASES) == 18
    assert BASELINE == "1.11.11" and rules_for(BASELINE).changes == ()


@pytest.mark.parametrize("release", sorted(EXPECTED))
def test_each_release_gets_exactly_the_expected_rules(release: str) -> None:
    rules = rules_for(release)
    assert {name for name in RULE_NAMES if getattr(rules, name)} == EXPECTED[release]
    assert {c.rule for c in rules.changes} == EXPECTED[release]


def test_every_row_is_well_formed_and_rows_of_a_rule_do_not_overlap() -> None:
    for row in CHANGES:
        assert row.rule in RULE_NAMES and re.fullmatch(r"[0-9a-f]{40}", row.commit) and row.note.endswith(".")
    for release in RELEASES:
        rows = [c.rule for c in CHANGES if in_range(release, c.releases)]
        assert len(rows) == len(set(rows)), release


@pytest.mark.parametrize("release, commit", [("1.11.8", "cdc4f6abd9e62bfce7ad80832137af7f8c100fa9"),
                                             ("2.1.4", "c274d8dc52ae61567624b3f789645cee44ed2720")])
def test_the_race_rows_name_their_commit(release: str, commit: str) -> None:
    assert rules_for(release).explain("takes_stale_updates").commit == commit
    assert rules_for("2.1.5").explain("takes_stale_updates") is None


@pytest.mark.parametrize("bad", ["1.10.5", "2.2.0", "1.11", "", "latest"])
def test_a_release_without_usrloc_replication_is_a_clear_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="no usrloc replication in OpenSIPS release"):
        Registrar(release=bad)
