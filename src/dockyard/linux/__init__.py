"""Thin, typed wrappers over syscalls and kernel files; the only package that calls the kernel."""
