"""Image references: docker's grammar (distribution/reference) and its normalization.

``busybox`` means ``docker.io/library/busybox:latest``; ``localhost:5000/x@sha256:…`` names a
manifest by digest on a local registry. :func:`parse_reference` is the only way text becomes a
:class:`Reference`, so every Reference in the engine is normalized (full domain, ``library/``
for official Hub images, ``latest`` only when neither a tag nor a digest was given).
"""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument
from dockyard.model.image import Digest, check_digest
from dockyard.values import replace, value

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# The Hub's API lives on another name than the one users type (docker does the same mapping).
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?", re.ASCII
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII
)
_HEX64_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)

_FORMAT = "invalid reference format"


@value
class Reference:
    """A normalized image reference. Build one with :func:`parse_reference`."""

    domain: str            # "docker.io", "localhost:5000", "[::1]:5000"
    path: str              # "library/busybox"
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name docker prints: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            # Only single-level official names lose the prefix (docker's familiarizeName).
            if "/" not in rest:
                return rest
        if split_domain(self.path)[0] != DEFAULT_DOMAIN:
            # "docker.io/a.b/c" shortened to "a.b/c" would name the registry a.b.
            return self.repository
        return self.path

    @property
    def familiar(self) -> str:
        """``busybox:latest``, ``x@sha256:…``: what docker shows to users."""
        return self.familiar_name + self._suffix()

    @property
    def registry_host(self) -> str:
        """The host[:port] the registry API is reached at (the Hub's differs from its name)."""
        return DEFAULT_REGISTRY_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the API: the digest if any, else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest | str) -> Reference:
        return replace(self, digest=check_digest(digest))

    def without_tag(self) -> Reference:
        return replace(self, tag=None)

    def without_digest(self) -> Reference:
        return replace(self, digest=None)

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.repository + self._suffix()


def split_domain(name: str) -> tuple[str, str]:
    """docker's splitDockerDomain: a first component is a domain if it holds ``.`` or ``:``,
    is ``localhost``, or has uppercase letters (paths never do)."""
    first, sep, rest = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> Reference:
    """Parse and normalize ``[domain/]path[:tag][@digest]``; InvalidArgument if malformed."""
    if _HEX64_RE.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings",
            hint="to refer to an image by id, use the id itself, not a reference")
    name, at, digest_text = text.partition("@")
    if at and not digest_text:
        raise InvalidArgument(f"{_FORMAT}: {text!r}")
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"{_FORMAT}: invalid tag {tag!r} in {text!r}")
    if not name:
        raise InvalidArgument(f"{_FORMAT}: repository name must have at least one component")
    domain, path = split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgument(f"{_FORMAT}: invalid registry domain {domain!r} in {text!r}")
    if not _PATH_RE.fullmatch(path):
        if path.lower() != path and _PATH_RE.fullmatch(path.lower()):
            raise InvalidArgument(
                f"{_FORMAT}: repository name ({path}) must be lowercase")
        raise InvalidArgument(f"{_FORMAT}: {text!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"{_FORMAT}: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    digest: Digest | None = None
    if at:
        if not _DIGEST_RE.fullmatch(digest_text):
            raise InvalidArgument(f"{_FORMAT}: invalid digest {digest_text!r}")
        digest = check_digest(digest_text, "invalid reference format")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def parse_repository(text: str) -> Reference:
    """Parse a bare repository name (no tag, no digest), e.g. a ``from=`` mount source."""
    ref = parse_reference(text)
    if ":" in text.rpartition("/")[2] or "@" in text:
        raise InvalidArgument(f"{_FORMAT}: {text!r} must be a repository without tag or digest")
    return replace(ref, tag=None)
