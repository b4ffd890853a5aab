"""The Docker Engine REST API front end."""
