"""`python -m wondernest_backup run | verify | list | prune | restore | cycle | serve | import-dump`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from wondernest_api.db import describe_error
from wondernest_api.envconfig import SettingsError

from wondernest_backup.backup import Repository, prune, restore, run, server_roles, verify
from wondernest_backup.imports import import_dump
from wondernest_backup.offsite import Offsite
from wondernest_backup.pgtools import BackupError, clean_orphans, remove_work_dir, work_dir
from wondernest_backup.settings import BackupSettings, load_settings

# The commands that change or prove backups, by the stage a failure counts under.
STAGE_OF = {"run": "backup", "verify": "verify", "prune": "prune", "restore": "restore"}


def _pick(repo: Repository, backup_id: str | None, latest: bool) -> str:
    if latest:
        newest = repo.newest_verified()
        if newest is None:
            raise BackupError("no verified backup to pick; run `verify` first")
        return newest.id
    if not backup_id:
        raise BackupError("name a backup id or pass --latest")
    return backup_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wondernest_backup")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="take a backup now")
    v = commands.add_parser("verify", help="prove a backup by restoring it into a throwaway server")
    v.add_argument("id", nargs="?")
    v.add_argument("--latest", action="store_true", help="the newest backup, verified or not")
    commands.add_parser("list", help="the backups in the repository")
    commands.add_parser("prune", help="delete what the retention policy does not keep")
    r = commands.add_parser("restore", help="restore a backup into a database")
    r.add_argument("id", nargs="?")
    r.add_argument("--latest", action="store_true", help="the newest verified backup")
    r.add_argument("--target-db", required=True, help="created if missing; refused if it holds tables")
    r.add_argument("--force", action="store_true", help="replace the contents of a non-empty target")
    r.add_argument("--from-s3", action="store_true", help="download the backup from the bucket first")
    commands.add_parser("cycle", help="one scheduled cycle now: back up, verify, prune, copy off-site")
    commands.add_parser("serve", help="the scheduled cycle, with /metrics")
    i = commands.add_parser("import-dump", help="a custom-format pg_dump made elsewhere, into the platform's schemas")
    i.add_argument("file", help="the archive (pg_dump -Fc); - for standard input")
    i.add_argument("--owner", required=True, help="the role that owns the schemas' objects (the migrator)")
    i.add_argument("--schemas", required=True, help="the stack's schemas, comma-separated")
    args = parser.parse_args(argv)
    # Dumps hold every row of the platform: readable by their owner only,
    # whoever runs the tool and wherever (a checkout's umask is usually 022).
    os.umask(0o077)
    repo: Repository | None = None
    stage = STAGE_OF.get(args.command)
    try:
        settings = load_settings(os.environ)
        repo = Repository(settings.backup_dir)
        if args.command == "serve":
            from wondernest_backup.service import serve

            serve(settings)
            return 0
        if args.command == "cycle":
            return _cycle(settings, repo)
        if args.command == "list":
            _list(repo)
            return 0
        if args.command == "import-dump":
            # As RESTORE_DB_USER, which must be the owner itself (the migrator), never the backup job's role.
            schemas = [s for s in args.schemas.split(",") if s]
            with _archive(args.file) as dump:
                rows = import_dump(settings.restorer(), dump, schemas=schemas, owner=args.owner)
            print(json.dumps({"imported": args.file, "owner": args.owner, "rows": rows}))
            return 0
        with repo.changing(wait=False):
            # What killed runs left behind: half-written dumps, password files, verification servers.
            leftovers = [*repo.clean_partials(), *clean_orphans()]
            if leftovers:
                sys.stderr.write(f"removed what interrupted runs left behind: {', '.join(leftovers)}\n")
            _change(args, settings, repo)
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; what it left behind is removed by the next command\n")
        return 130
    except (BackupError, psycopg.Error, OSError) as exc:
        detail = f"database: {describe_error(exc)}" if isinstance(exc, psycopg.Error) else str(exc)
        if repo is not None and stage is not None:
            # Where the service's metrics read it, so BackupFailed fires for a run by hand too.
            repo.record_failure(stage, detail)
        sys.stderr.write(f"error: {stage + ' failed: ' if stage else ''}{detail}\n")
        return 1
    finally:
        remove_work_dir()
    return 0


def _cycle(settings: BackupSettings, repo: Repository) -> int:
    """What the service does at each slot, once, for a backup on demand where
    no service's directory is at hand (a one-off task on AWS): 0 only when the
    new backup was taken, verified and, with a bucket, copied there."""
    from wondernest_backup.service import BackupMetrics, cycle

    offsite = Offsite.from_settings(settings)
    before = {m.id for m in repo.all()}
    ok = cycle(settings, repo, BackupMetrics(repo, offsite_enabled=offsite is not None), offsite)
    new = [m for m in repo.all() if m.id not in before]
    taken = new[-1] if new else None
    print(
        json.dumps(
            {
                "backup": taken.id if taken else None,
                "verified": bool(taken and taken.verified_at),
                "copied": bool(taken and taken.copied_at),
            }
        )
    )
    return 0 if ok and taken is not None and taken.verified_at and (offsite is None or taken.copied_at) else 1


@contextlib.contextmanager
def _archive(name: str) -> Iterator[Path]:
    """The named file, or standard input kept in a private file while it is read:
    an operator pipes a dump in rather than copying it into the container."""
    if name != "-":
        yield Path(name)
        return
    with tempfile.NamedTemporaryFile(prefix="import-", suffix=".dump", dir=work_dir()) as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle)
        handle.flush()
        yield Path(handle.name)


def _list(repo: Repository) -> None:
    for m in repo.all():
        state = f"verified {m.verified_at}" if m.verified_at else "UNVERIFIED"
        if m.verification.get("failed_at"):
            state += f" (verification failed {m.verification['failed_at']})"
        print(f"{m.id}  {m.size_bytes:>12} bytes  {sum(m.tables.values()):>10} rows  {state}")
    for backup_id in repo.corrupt():
        print(f"{backup_id}  CORRUPT MANIFEST: not used, not pruned; inspect and delete it by hand")


def _change(args: argparse.Namespace, settings: BackupSettings, repo: Repository) -> None:
    """The commands that change the repository, one at a time per directory."""
    if args.command == "run":
        print(json.dumps({"backup": run(settings.source(), repo).id}))
    elif args.command == "verify":
        if args.latest:
            manifests = repo.all()
            if not manifests:
                raise BackupError("no backup to verify")
            backup_id = manifests[-1].id
        else:
            backup_id = _pick(repo, args.id, False)
        try:
            roles: set[str] | None = server_roles(settings.source())
        except psycopg.OperationalError:
            roles = None
            sys.stderr.write("the database is unreachable: the roles the backup names are not checked\n")
        manifest = verify(repo, backup_id, jobs=settings.restore_jobs, platform_roles=roles)
        print(json.dumps({"verified": manifest.id, **manifest.verification}))
    elif args.command == "prune":
        print(json.dumps({"deleted": prune(repo, settings.retention())}))
    elif args.command == "restore":
        if args.from_s3:
            offsite = Offsite.from_settings(settings)
            if offsite is None or not args.id:
                raise BackupError("--from-s3 needs S3_BUCKET and a backup id")
            offsite.download(repo, args.id)
        backup_id = _pick(repo, args.id, args.latest)
        aside = restore(
            settings.restorer(), repo, backup_id, args.target_db, force=args.force, jobs=settings.restore_jobs,
            platform_database=settings.db_name,
        )  # fmt: skip
        print(json.dumps({"restored": backup_id, "into": args.target_db, "previous_kept_as": aside}))


if __name__ == "__main__":
    sys.exit(main())
