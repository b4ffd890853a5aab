"""The image store: which images exist, their names, layers and the blobs they hold on to.

Rows live in the engine root's SQLite database (tables ``images``, ``image_refs``,
``image_repo_digests``, ``image_layers``, ``image_blobs``); the bytes live in the content store
and the unpacked layers in the snapshotter. An image's id is the digest of its config, as in
Docker. Names are stored fully normalised (``docker.io/library/busybox:latest``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from dockyard.db import ensure_schema, transaction
from dockyard.errors import InvalidArgument, NotFound
from dockyard.model.image import Digest
from dockyard.values import value

_MIGRATIONS: list[list[str]] = [[
    """CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        index_digest TEXT NOT NULL DEFAULT '',
        platform TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL DEFAULT '',
        added REAL NOT NULL)""",
    """CREATE TABLE image_refs (
        reference TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tagged REAL NOT NULL)""",
    "CREATE INDEX image_refs_by_image ON image_refs(image_id)",
    """CREATE TABLE image_repo_digests (
        repository TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (repository, digest))""",
    """CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        chain_id TEXT NOT NULL,
        diff_id TEXT NOT NULL,
        blob_digest TEXT NOT NULL,
        blob_media_type TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (image_id, position))""",
    "CREATE INDEX image_layers_by_chain ON image_layers(chain_id)",
    """CREATE TABLE image_blobs (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, digest))""",
]]


@value
class Layer:
    chain_id: Digest
    diff_id: Digest
    blob_digest: Digest
    blob_media_type: str
    blob_size: int
    size: int                 # unpacked bytes


@value
class ImageRecord:
    id: Digest                # the config's digest
    manifest_digest: Digest
    manifest_media_type: str
    index_digest: str         # "" when the image was not reached through an index
    platform: str
    size: int                 # sum of unpacked layer sizes (docker's Size)
    created: str              # from the config
    added: float              # when it came into this store
    references: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()   # "docker.io/library/busybox@sha256:…"
    layers: tuple[Layer, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id.partition(":")[2][:12]


class ImageStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        ensure_schema(conn, "images", _MIGRATIONS)

    # --- writes ------------------------------------------------------------------------------

    def add(self, record: ImageRecord, blobs: Iterable[str],
            references: Sequence[str] = ()) -> ImageRecord:
        """Insert or refresh an image; move ``references`` (full names) onto it."""
        now = time.time()
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, index_digest,"
                " platform, size, created, added) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest,"
                " manifest_media_type=excluded.manifest_media_type,"
                " index_digest=excluded.index_digest",
                (record.id, record.manifest_digest, record.manifest_media_type,
                 record.index_digest, record.platform, record.size, record.created,
                 record.added or now))
            c.execute("DELETE FROM image_layers WHERE image_id = ?", (record.id,))
            c.executemany(
                "INSERT INTO image_layers VALUES (?,?,?,?,?,?,?,?)",
                [(record.id, i, la.chain_id, la.diff_id, la.blob_digest, la.blob_media_type,
                  la.blob_size, la.size) for i, la in enumerate(record.layers)])
            c.executemany("INSERT OR IGNORE INTO image_blobs VALUES (?, ?)",
                          [(record.id, d) for d in blobs])
            for rd in record.repo_digests:
                repo, _, digest = rd.partition("@")
                c.execute("INSERT OR REPLACE INTO image_repo_digests VALUES (?,?,?)",
                          (repo, digest, record.id))
            for ref in references:
                c.execute("INSERT OR REPLACE INTO image_refs VALUES (?,?,?)",
                          (ref, record.id, now))
        return self.get(record.id)

    def tag(self, image_id: str, reference: str) -> str | None:
        """Point ``reference`` at the image; returns the image it pointed at before, if other."""
        with transaction(self.conn) as c:
            row = c.execute("SELECT image_id FROM image_refs WHERE reference = ?",
                            (reference,)).fetchone()
            c.execute("INSERT OR REPLACE INTO image_refs VALUES (?,?,?)",
                      (reference, image_id, time.time()))
        old = str(row[0]) if row else None
        return old if old != image_id else None

    def add_repo_digest(self, image_id: str, repository: str, digest: str) -> None:
        with transaction(self.conn) as c:
            c.execute("INSERT OR REPLACE INTO image_repo_digests VALUES (?,?,?)",
                      (repository, digest, image_id))

    def untag(self, reference: str) -> str:
        with transaction(self.conn) as c:
            row = c.execute("SELECT image_id FROM image_refs WHERE reference = ?",
                            (reference,)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {reference}")
            c.execute("DELETE FROM image_refs WHERE reference = ?", (reference,))
        return str(row[0])

    def delete(self, image_id: str) -> None:
        with transaction(self.conn) as c:
            c.execute("DELETE FROM images WHERE id = ?", (image_id,))

    # --- reads -------------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        return self._record(row)

    def find_id(self, name: str, candidates: Sequence[str] = ()) -> str | None:
        """An image id from a full id, an id prefix (≥ 1 hex digit) or a stored reference.

        ``candidates`` are full reference forms of ``name``: ``repository:tag`` or
        ``repository@digest`` (the caller parses references; this only matches strings).
        """
        for ref in candidates:
            if "@" in ref:
                repo, _, digest = ref.partition("@")
                row = self.conn.execute(
                    "SELECT image_id FROM image_repo_digests WHERE repository = ? AND digest = ?",
                    (repo, digest)).fetchone()
                if row is None:
                    row = self.conn.execute(
                        "SELECT id FROM images WHERE manifest_digest = ? OR index_digest = ?",
                        (digest, digest)).fetchone()
            else:
                row = self.conn.execute("SELECT image_id FROM image_refs WHERE reference = ?",
                                        (ref,)).fetchone()
            if row is not None:
                return str(row[0])
        hexpart = name[7:] if name.startswith("sha256:") else name
        if hexpart and len(hexpart) <= 64 and all(ch in "0123456789abcdef" for ch in hexpart):
            rows = self.conn.execute("SELECT id FROM images WHERE id LIKE ?",
                                     (f"sha256:{hexpart}%",)).fetchall()
            if len(rows) == 1:
                return str(rows[0][0])
            if len(rows) > 1:
                raise InvalidArgument(f"image id prefix {name!r} is ambiguous "
                                      f"({len(rows)} images match)")
        return None

    def list(self) -> list[ImageRecord]:
        rows = self.conn.execute("SELECT * FROM images ORDER BY added DESC").fetchall()
        return [self._record(r) for r in rows]

    def references(self, image_id: str) -> tuple[str, ...]:
        rows = self.conn.execute(
            "SELECT reference FROM image_refs WHERE image_id = ? ORDER BY tagged",
            (image_id,)).fetchall()
        return tuple(str(r[0]) for r in rows)

    def referenced_blobs(self) -> set[str]:
        rows = self.conn.execute("SELECT DISTINCT digest FROM image_blobs").fetchall()
        return {str(r[0]) for r in rows}

    def layer_size(self, chain_id: str) -> int | None:
        row = self.conn.execute("SELECT size FROM image_layers WHERE chain_id = ? LIMIT 1",
                                (chain_id,)).fetchone()
        return None if row is None else int(row[0])

    def referenced_chain_ids(self) -> set[str]:
        rows = self.conn.execute("SELECT DISTINCT chain_id FROM image_layers").fetchall()
        return {str(r[0]) for r in rows}

    def _record(self, row: sqlite3.Row) -> ImageRecord:
        image_id = str(row["id"])
        layers = tuple(
            Layer(Digest(r["chain_id"]), Digest(r["diff_id"]), Digest(r["blob_digest"]),
                  str(r["blob_media_type"]), int(r["blob_size"]), int(r["size"]))
            for r in self.conn.execute(
                "SELECT * FROM image_layers WHERE image_id = ? ORDER BY position", (image_id,)))
        repo_digests = tuple(
            f"{r[0]}@{r[1]}" for r in self.conn.execute(
                "SELECT repository, digest FROM image_repo_digests WHERE image_id = ? "
                "ORDER BY repository", (image_id,)))
        return ImageRecord(
            id=Digest(image_id), manifest_digest=Digest(row["manifest_digest"]),
            manifest_media_type=str(row["manifest_media_type"]),
            index_digest=str(row["index_digest"]), platform=str(row["platform"]),
            size=int(row["size"]), created=str(row["created"]), added=float(row["added"]),
            references=self.references(image_id), repo_digests=repo_digests, layers=layers)
