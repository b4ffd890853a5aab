"""The docker-compatible `dockyard` command line."""
