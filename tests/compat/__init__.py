"""Compat tests: real engines (podman, dockerd) driving our OCI runtime."""
