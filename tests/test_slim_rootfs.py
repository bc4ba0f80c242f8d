"""The stand-ins' base made slim as debian:bookworm-slim is (tests/e2e/slim_rootfs.py)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.slim_rootfs import slim


def tree(root: Path) -> set[str]:
    return {"/" + str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


def test_documentation_and_translations_go_and_stay_out(tmp_path: Path) -> None:
    files = {
        "usr/share/doc/libc6/copyright": "kept",
        "usr/share/doc/libc6/changelog.Debian.gz": "gone",
        "usr/share/locale/de/LC_MESSAGES/apt.mo": "gone",
        "usr/share/locale/locale.alias": "kept",
        "usr/share/man/man1/ls.1.gz": "gone",
        "usr/share/info/coreutils.info.gz": "gone",
        "usr/share/zoneinfo/UTC": "kept",
        "usr/lib/postgresql/15/bin/initdb": "kept",
    }
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "usr/share/doc/libc6/NEWS.gz").symlink_to("changelog.Debian.gz")
    for directory in ("usr/sbin", "etc/apt/apt.conf.d"):
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)

    deleted = slim(tmp_path)

    assert sorted(deleted) == sorted(f"/{n}" for n, fate in files.items() if fate == "gone")
    left = tree(tmp_path)
    assert {f"/{n}" for n, fate in files.items() if fate == "kept"} <= left
    assert "/usr/share/doc/libc6/NEWS.gz" not in left  # dangling once its target went
    assert not (tmp_path / "usr/share/locale/de").exists()  # emptied directories go
    assert (tmp_path / "usr/share/man/man1").is_dir()  # the manual sections stay, empty
    dpkg = (tmp_path / "etc/dpkg/dpkg.cfg.d/docker").read_text().splitlines()
    # Excludes first, includes after: for dpkg the last matching pattern wins.
    assert dpkg.index("path-exclude /usr/share/doc/*") < dpkg.index("path-include /usr/share/doc/*/copyright")
    clean = (tmp_path / "etc/apt/apt.conf.d/docker-clean").read_text()
    assert 'Dir::Cache::pkgcache "";' in clean and "/var/cache/apt/*.bin" in clean
    assert (tmp_path / "usr/sbin/policy-rc.d").stat().st_mode & 0o111
    assert not (tmp_path / "etc/apt/apt.conf.d/docker-no-recommends").exists()
