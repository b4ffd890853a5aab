"""The per-container supervisor (the conmon / shim analogue)."""
