"""Cgroup managers: v1, v2 (and later systemd) backends behind one protocol."""
