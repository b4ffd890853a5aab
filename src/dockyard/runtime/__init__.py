"""The OCI runtime: bundles, lifecycle verbs and the runc-compatible command line."""
