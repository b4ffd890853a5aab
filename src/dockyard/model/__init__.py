"""Frozen dataclasses shared by every layer: the OCI runtime spec, image descriptors, references."""
