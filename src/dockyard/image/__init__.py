"""Image references, registry client, content store, unpack and snapshots."""
