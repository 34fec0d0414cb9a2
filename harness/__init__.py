"""Harness for real OpenSIPS 1.10 clusters; see docs/DESIGN.md."""
