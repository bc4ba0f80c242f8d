"""Stand-ins for the upstream images the dev stack pins, which this machine
cannot pull: a Debian bookworm root made by debootstrap from the Debian mirror
and imported, then one small Dockerfile per image (tests/e2e/standins/<name>/)
installing Debian's package of the same server and keeping the upstream
image's contract. Each is tagged with the exact reference the stack config
uses, so the program's graph is the one `pulumi up` would apply."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from components.config import PlatformConfig
from components.model.images import context_digest
from tests.e2e.engine import E2E_DIR, Engine
from tests.e2e.slim_rootfs import slim

HERE = Path(__file__).parent / "standins"
# debian:bookworm-slim as debuerreotype makes it (tests/e2e/slim_rootfs.py).
BASE = "wondernest-e2e/bookworm:slim"
MIRROR = "http://deb.debian.org/debian"
DEBIAN_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# The machine's own extra CAs (its TLS-inspecting egress), for pip in the Python stand-in.
BUILD_CAS = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class StandIn:
    directory: str
    reference: str


def stand_ins(config: PlatformConfig) -> list[StandIn]:
    """Every upstream image the stack config pins, except Grafana's, which has
    no Debian or PyPI package to stand in with; plus the Python base
    app/Dockerfile builds from."""
    images = config.images
    found = [
        StandIn("python", python_base()),
        StandIn("postgres", images.postgres),
        StandIn("redis", images.redis),
        StandIn("prometheus", images.prometheus),
        StandIn("alertmanager", images.alertmanager),
        StandIn("postgres-exporter", images.postgres_exporter),
        StandIn("redis-exporter", images.redis_exporter),
        StandIn("node-exporter", images.node_exporter),
    ]
    if config.dev_tools.enabled:
        found.append(StandIn("pgadmin", images.pgadmin))
    return found


def python_base() -> str:
    """The one Python image app/Dockerfile names, read from it."""
    dockerfile = (Path(__file__).resolve().parents[2] / "app" / "Dockerfile").read_text()
    bases = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM python:")}
    if len(bases) != 1:
        raise AssertionError(f"app/Dockerfile names {sorted(bases)}; the stand-in covers exactly one Python image")
    return bases.pop()


# Which version of its directory a stand-in was built from: one built before
# its Dockerfile changed is built again, never kept.
DIGEST_LABEL = "com.wondernest.e2e.standin-digest"


def _image_exists(engine: Engine, reference: str, digest: str | None = None) -> bool:
    try:
        image = engine.client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return digest is None or (image.labels or {}).get(DIGEST_LABEL) == digest


def standin_digest(stand_in: StandIn) -> str:
    """Its directory's digest and the base it builds on: a new base rebuilds every stand-in."""
    return hashlib.sha256(f"{context_digest(HERE / stand_in.directory)}\0{BASE}".encode()).hexdigest()[:16]


def bookworm_base(engine: Engine) -> None:
    """debootstrap's minimal bookworm made slim as the official image is, with
    the security and updates suites, imported once."""
    if _image_exists(engine, BASE):
        return
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    E2E_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=E2E_DIR, prefix="rootfs-") as root:
        subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", root, MIRROR],
            check=True,
            capture_output=True,
        )
        sources = Path(root, "etc/apt")
        (sources / "sources.list").unlink(missing_ok=True)
        (sources / "sources.list.d" / "debian.sources").write_text(DEBIAN_SOURCES)
        slim(Path(root))
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in Path(root, cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                'tar -C "$1" -c . | docker import --change \'CMD ["bash"]\' - "$2"',
                "-",
                root,
                BASE,
            ],
            env=engine.env,
            check=True,
            capture_output=True,
        )


def build(engine: Engine, stand_in: StandIn) -> str:
    """Build one stand-in with the docker CLI; its context is a copy of the
    directory, plus the build CAs where its Dockerfile asks for them."""
    with tempfile.TemporaryDirectory(prefix="standin-") as context:
        shutil.copytree(HERE / stand_in.directory, context, dirs_exist_ok=True)
        if "build-cas/" in Path(context, "Dockerfile").read_text():
            cas = Path(context, "build-cas")
            cas.mkdir()
            for ca in BUILD_CAS.glob("*.crt"):
                shutil.copy(ca, cas / ca.name)
        engine.build(
            stand_in.reference,
            Path(context),
            build_args={"BASE": BASE},
            labels={DIGEST_LABEL: standin_digest(stand_in)},
        )
    return stand_in.reference


def build_all(engine: Engine, config: PlatformConfig) -> list[str]:
    """The base, then every stand-in not already on the engine, three at a time."""
    bookworm_base(engine)
    missing = [s for s in stand_ins(config) if not _image_exists(engine, s.reference, standin_digest(s))]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda s: build(engine, s), missing))
