"""Which field codec runs: the compiled ``_speedups`` or its pure-Python twin ``_fields``.

Chosen once, here, so that the wire layer and the dialog layer always use the same
one; ``PYBIN_PURE=1`` forces the twin (both give identical results).
"""

from __future__ import annotations

import os
from types import ModuleType

impl: ModuleType
if os.environ.get("PYBIN_PURE"):
    from . import _fields as impl
else:
    try:
        from . import _speedups as impl  # type: ignore[attr-defined,no-redef]
    except ImportError:  # no compiler at install time: same results, slower
        from . import _fields as impl

#: True when the compiled codec is in use (see README, Performance).
COMPILED = impl.__name__.endswith("_speedups")

#: ``header()``'s verdicts, in the order 1.10's receive loop checks (the checksum,
#: checked between marker and name, is returned for the caller to judge).
HEADER_OK, HEADER_RUNT, HEADER_BAD_MARKER, HEADER_BAD_NAME = 0, 1, 2, 3
