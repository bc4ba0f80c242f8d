"""What makes a debootstrap root into `debian:bookworm-slim`, the base of
every upstream image the stand-ins replace (python:*-slim-bookworm,
postgres:*-bookworm, redis:*-bookworm are all `FROM debian:bookworm-slim`).

The official images are built by debuerreotype; this follows its two steps
(github.com/debuerreotype/debuerreotype at 7de510f):
- `scripts/debuerreotype-minimizing-config`: no services started by package
  scripts, dpkg without sync, apt keeping no caches in a layer, compressed
  lists, no translations, autoremove that removes suggested packages too;
- `scripts/debuerreotype-slimify` with `.slimify-excludes` and
  `.slimify-includes`: documentation, manuals and translations left out by
  dpkg (`path-exclude`), now and for every package installed later.

Without them a stand-in's `apt-get install` layer carries apt's binary
caches and every package's translations, and the size an image adds on top
of its base is not the size it adds on the real one.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

POLICY_RC_D = """#!/bin/sh
exit 101
"""
APT_SPEEDUP = "force-unsafe-io\n"
_APT_GET_CLEAN = (
    '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
)
APT_CONF = {
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "docker-clean": (
        f"DPkg::Post-Invoke {{ {_APT_GET_CLEAN} }};\n"
        f"APT::Update::Post-Invoke {{ {_APT_GET_CLEAN} }};\n"
        'Dir::Cache::pkgcache "";\n'
        'Dir::Cache::srcpkgcache "";\n'
    ),
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
}
# .slimify-excludes and .slimify-includes, in the order dpkg reads them.
EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/doc/kde/HTML/*/*",
    "/usr/share/gnome/help/*/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
    "/usr/share/omf/*/*-*.emf",
)
INCLUDES = (
    "/usr/share/doc/*/copyright",
    "/usr/share/doc/kde/HTML/C/*",
    "/usr/share/gnome/help/*/C/*",
    "/usr/share/locale/all_languages",
    "/usr/share/locale/currency/*",
    "/usr/share/locale/l10n/*",
    "/usr/share/locale/languages",
    "/usr/share/locale/locale.alias",
    "/usr/share/omf/*/*-C.emf",
)


def dpkg_config() -> str:
    lines = ["# The slim variant: files rarely needed in containers are left out by dpkg."]
    lines += [f"path-exclude {pattern}" for pattern in EXCLUDES]
    lines += [f"path-include {pattern}" for pattern in INCLUDES]
    return "\n".join(lines) + "\n"


def _excluded(path: str) -> bool:
    # dpkg's filters.c: the last matching pattern wins, includes after excludes.
    return any(fnmatch.fnmatchcase(path, p) for p in EXCLUDES) and not any(
        fnmatch.fnmatchcase(path, p) for p in INCLUDES
    )


def slim(root: Path) -> list[str]:
    """The minimizing config written into `root`, and the files the slim
    config excludes deleted from it, then the dangling symlinks and empty
    directories that leaves, as debuerreotype-slimify does (and, as it does,
    the manual sections' directories put back); returns what was deleted."""
    (root / "usr/sbin/policy-rc.d").write_text(POLICY_RC_D)
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/docker-apt-speedup").write_text(APT_SPEEDUP)
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(dpkg_config())
    for name, text in APT_CONF.items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text)
    man_sections = [d.relative_to(root) for d in (root / "usr/share/man").glob("man[0-9]") if d.is_dir()]
    deleted: list[str] = []
    tops = sorted({(root / p.split("/*")[0].lstrip("/")) for p in EXCLUDES})
    for base in tops:
        if not base.is_dir():
            continue
        for entry in base.rglob("*"):
            inside = "/" + str(entry.relative_to(root))
            if not entry.is_symlink() and entry.is_file() and _excluded(inside):
                entry.unlink()
                deleted.append(inside)
    removed = True
    while removed:
        removed = False
        for base in tops:
            if not base.is_dir():
                continue
            for entry in sorted(base.rglob("*"), key=lambda e: len(e.parts), reverse=True):
                dangling = entry.is_symlink() and not entry.exists()
                empty = not entry.is_symlink() and entry.is_dir() and not any(entry.iterdir())
                if empty:
                    entry.rmdir()
                elif dangling:
                    entry.unlink()
                removed = removed or empty or dangling
    for section in man_sections:
        (root / section).mkdir(parents=True, exist_ok=True)
    return deleted
