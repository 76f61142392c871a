"""Helpers that build tar streams and fingerprint directory trees for the images tests."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class E:
    """One tar entry to write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    major: int = 0
    minor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def make_tar(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = e.type
            ti.mode = e.mode
            ti.uid, ti.gid = e.uid, e.gid
            ti.mtime = e.mtime
            ti.linkname = e.link
            ti.devmajor, ti.devminor = e.major, e.minor
            ti.pax_headers = dict(e.pax)
            if e.type == tarfile.REGTYPE:
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def tree_hash(root: Path, exclude: set[str] | None = None) -> str:
    """Fingerprint names, types, modes, owners, contents and link targets under root."""
    h = hashlib.sha256()
    exclude = exclude or set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if os.path.join(rel_dir, d) not in exclude
                             and d not in exclude)
        for name in sorted([*dirnames, *filenames]):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.join(rel_dir, name)}|{st.st_mode:o}|{st.st_uid}|{st.st_gid}|"
                     .encode())
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
    st = os.lstat(root)
    h.update(f"root|{st.st_mode:o}|{st.st_uid}|{st.st_gid}".encode())
    return h.hexdigest()
