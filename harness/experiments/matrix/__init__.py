"""The version matrix: behaviour checks run on any release and any primary/backup pair.

`registry` names the checks; `checks_sip`, `checks_flags`, `checks_backup`,
`checks_usrloc`, `checks_failover` and `checks_hostile` observe, each in a
`session.PairSession`, once the behaviour is over (`complete`); `judge` compares an
observation with the baseline pair's and `known` pins the upstream commit and exact
values behind a known difference; `expected` holds the baseline to its own code;
`runner` runs checks over pairs; `report` writes matrix.md / matrix.json / JUnit,
`html` matrix.html; `predictions` holds what was predicted against a run.
``harness matrix`` is `harness.cli.matrix`.
"""
