"""`harness bench …`: capacity figures of real OpenSIPS 1.10 nodes (not tests: they print measurements)."""
