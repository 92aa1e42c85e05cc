"""The host's own Debian apt sources, reused for VM images and compile chroots.

The project never names a mirror: it reads the URIs the host already uses
(deb822 ``*.sources`` or one-line ``*.list`` files) and writes a sources file
for the suite it needs (bookworm, trixie, sid) with the same URIs.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")


class AptSourcesError(RuntimeError):
    pass


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def _parse_deb822(text: str) -> list[Source]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(Source(uri, tuple(fields.get("suites", "").split()),
                                  tuple(fields.get("components", "main").split()),
                                  fields.get("signed-by")))
    return sources


def _parse_list(text: str) -> list[Source]:
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^]]*\]", "", line)  # drop [arch=... signed-by=...] options
        parts = line.split()
        if len(parts) >= 3:
            sources.append(Source(parts[1], (parts[2],), tuple(parts[3:]) or ("main",)))
    return sources


def host_sources(apt_dir: Path = APT_DIR) -> list[Source]:
    """Every enabled ``deb`` source of the host, in apt's reading order."""
    found: list[Source] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        found += _parse_list(main_list.read_text())
    for path in sorted(glob.glob(str(apt_dir / "sources.list.d" / "*"))):
        text = Path(path).read_text(errors="replace")
        if path.endswith(".sources"):
            found += _parse_deb822(text)
        elif path.endswith(".list"):
            found += _parse_list(text)
    return found


def debian_archive_uri(apt_dir: Path = APT_DIR) -> str:
    """The URI of the host's main Debian archive (the one that serves ``main``
    of a Debian suite, not the security archive)."""
    debian_suites = re.compile(r"^(bookworm|trixie|forky|sid|unstable|testing|stable)(-updates|-backports)?$")
    for source in host_sources(apt_dir):
        if "security" in source.uri:
            continue
        if any(debian_suites.match(s) for s in source.suites):
            return source.uri
    raise AptSourcesError(
        f"no Debian archive found in {apt_dir}/sources.list or {apt_dir}/sources.list.d/: "
        "thrashlab builds VM images from the host's own Debian apt sources")


def sources_for_suite(suite: str, apt_dir: Path = APT_DIR) -> str:
    """A one-line-format sources.list for ``suite`` on the host's Debian archive."""
    uri = debian_archive_uri(apt_dir)
    return f"deb {uri} {suite} main\n"


def write_sources_for_suite(suite: str, dest: Path, apt_dir: Path = APT_DIR) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(sources_for_suite(suite, apt_dir))
    os.replace(tmp, dest)
    return dest
