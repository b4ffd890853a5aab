"""The two whiteout formats layers use: AUFS names in tars, overlayfs markers on disk."""

from __future__ import annotations

# overlayfs: an opaque directory hides everything below it in lower layers
OPAQUE_XATTR = "trusted.overlay.opaque"
# AUFS, in layer tars: ".wh.<name>" deletes <name>, ".wh..wh..opq" makes its dir opaque,
# other ".wh..wh." names are AUFS metadata
WHITEOUT_PREFIX = b".wh."
WHITEOUT_META_PREFIX = b".wh..wh."
WHITEOUT_OPAQUE = b".wh..wh..opq"
