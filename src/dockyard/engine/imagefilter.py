"""docker's filters for image lists (``docker images --filter``, ``GET /images/json``), shared
by the CLI and the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.engine.images import ImageService
    from dockyard.image.store import ImageRecord


def filter_images(svc: ImageService, records: list[ImageRecord],
                  filters: dict[str, list[str]]) -> list[ImageRecord]:
    """docker's image filters: dangling, reference (globs; a repository without a tag
    matches its every tag), label (key or key=value), before, since."""
    import fnmatch

    from dockyard.engine.images import familiar

    out = []
    pivots: dict[str, float] = {}
    for key in ("before", "since"):
        for name in filters.get(key, []):
            pivots[key] = svc.resolve(name).added
    for rec in records:
        if "dangling" in filters:
            want = filters["dangling"][-1].lower()
            if want not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={want}'")
            if (want in ("true", "1")) != (not rec.references):
                continue
        if "reference" in filters:
            names = [familiar(r) for r in rec.references]
            pats = filters["reference"]
            if not any(ref_matches(n, pat, fnmatch.fnmatchcase) for n in names for pat in pats):
                continue
        if "label" in filters:
            labels = svc.image_config(rec).config.labels
            if not all(label_matches(labels, f) for f in filters["label"]):
                continue
        if "before" in pivots and not rec.added < pivots["before"]:
            continue
        if "since" in pivots and not rec.added > pivots["since"]:
            continue
        out.append(rec)
    return out


def ref_matches(name: str, pattern: str, match: Any) -> bool:
    repo = name.rpartition(":")[0]
    if ":" in pattern.rpartition("/")[2]:
        return bool(match(name, pattern))
    return bool(match(repo, pattern)) or bool(match(name, pattern))


def label_matches(labels: Any, f: str) -> bool:
    key, eq, val = f.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == val
