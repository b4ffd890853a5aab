"""Dockyard: a container engine built straight from kernel primitives."""

from __future__ import annotations

__version__ = "0.1.0"
#: The OCI runtime specification version that dockyard-runc implements.
OCI_SPEC_VERSION = "1.3.0"
