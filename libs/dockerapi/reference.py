"""Docker image references (distribution/reference grammar) with Docker Hub normalisation."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import errdefs

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "Reference",
    "is_full_id",
    "looks_like_id_prefix",
    "parse_reference",
    "validate_tag",
]

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_NAME_TOTAL_MAX = 255

# The grammar of distribution/reference (regexp.go), written out once.
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_DOMAIN_SPLIT_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_FULL_ID_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")
_ID_PREFIX_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str  # "docker.io", "localhost:5000", ...
    path: str  # "library/busybox"
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """Full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def familiar_name(self) -> str:
        """Name as the docker CLI shows it: ``busybox``, ``user/app``, ``example.com/a/b``."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(_OFFICIAL_PREFIX) and path.count("/") == 1:
                return path[len(_OFFICIAL_PREFIX) :]
            return path
        return self.name

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def string(self) -> str:
        """Full form, e.g. ``docker.io/library/busybox:latest``."""
        return self.name + self._suffix()

    def familiar_string(self) -> str:
        """Familiar form, e.g. ``busybox:latest``."""
        return self.familiar_name() + self._suffix()

    def with_default_tag(self) -> Reference:
        """Add the ``latest`` tag when neither a tag nor a digest is given."""
        if self.tag or self.digest:
            return self
        return replace(self, tag=DEFAULT_TAG)

    def __str__(self) -> str:
        return self.string()


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = first, name[i + 1 :]
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = _OFFICIAL_PREFIX + rest
    return domain, rest


def parse_reference(s: str) -> Reference:
    """Parse and normalise a reference the way ``docker pull``/``tag`` do.

    Raises:
        errdefs.InvalidArgument: with Docker's texts, e.g. ``invalid reference format``.
    """
    if _HEX64_RE.match(s):
        raise errdefs.InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    if not s:
        raise errdefs.InvalidArgument("invalid reference format")
    domain, rest = _split_domain(s)
    remote = rest
    for sep in ("@", ":"):
        j = remote.find(sep)
        if j >= 0:
            remote = remote[:j]
    if remote.lower() != remote:
        raise errdefs.InvalidArgument(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    m = _REFERENCE_RE.match(f"{domain}/{rest}")
    if m is None:
        raise errdefs.InvalidArgument("invalid reference format")
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    if len(name) > _NAME_TOTAL_MAX:
        raise errdefs.InvalidArgument(
            f"repository name must not be more than {_NAME_TOTAL_MAX} characters"
        )
    dm = _DOMAIN_SPLIT_RE.match(name)
    if dm is None or dm.group(1) != domain:  # pragma: no cover - implied by the match above
        raise errdefs.InvalidArgument("invalid reference format")
    return Reference(domain=domain, path=dm.group(2), tag=tag, digest=digest)


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag (``[\\w][\\w.-]{0,127}``).

    Raises:
        errdefs.InvalidArgument: ``invalid tag format``.
    """
    if not _TAG_RE.match(tag):
        raise errdefs.InvalidArgument("invalid tag format")
    return tag


def is_full_id(s: str) -> bool:
    """Return whether ``s`` is a full image id (64 hex, optionally ``sha256:``-prefixed)."""
    return bool(_FULL_ID_RE.match(s))


def looks_like_id_prefix(s: str) -> bool:
    """Return whether ``s`` could be an id prefix (1-64 lowercase hex, optional ``sha256:``)."""
    return bool(_ID_PREFIX_RE.match(s))
