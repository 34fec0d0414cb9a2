"""The version matrix: behaviour checks run on any release and any primary/backup pair.

`checks` (and `checks_nodes`) observe; `judge` compares an observation with the
baseline's and `known` names the upstream commit behind a known difference; `runner`
runs checks over pairs; `report` writes matrix.md / matrix.json / JUnit; `cli` is
``harness matrix``.
"""
