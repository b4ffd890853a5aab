"""Containers, images, networks, volumes and pods over one SQLite database."""
