"""A `pg_dump` made elsewhere, brought into the platform's database.

Its objects end as the platform's own do: created by the role the migrations
run as, in the schemas the stack declares, reachable by the platform's roles
through that owner's default privileges, whatever owners and grants the dump
carried. Nothing outside the declared schemas is written, and a schema that
already holds tables is never imported into. (Objects another role made in
the declared schemas before the platform, `pulumi up` hands to that owner
itself: see the Schema provider.)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from wondernest_backup.pgtools import BackupError, Endpoint, archive_encoding, child_env, codec_of, tool, work_dir

_TABLES = """
SELECT c.oid::regclass::text FROM pg_class c
WHERE c.relnamespace = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1
"""


def _schema_oids(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[int]:
    rows = dict(
        conn.execute("SELECT nspname, oid::int FROM pg_namespace WHERE nspname = ANY(%s)", (list(schemas),)).fetchall()
    )
    missing = [s for s in schemas if s not in rows]
    if missing:
        raise BackupError(
            f"database {conn.info.dbname!r} has no schema {', '.join(missing)}: the stack creates the schemas it "
            "declares (postgres.schemas); run make up first"
        )
    return [rows[s] for s in schemas]


@dataclass(frozen=True)
class Entry:
    line: bytes
    """As pg_restore listed it, in the archive's encoding: handed back to it in `--use-list`."""
    desc: str
    schema: str
    name: str
    """Read with Python's codec for the archive's encoding, to judge and name;
    the server converts `raw_schema` and `raw_name` where the exact name counts."""
    raw_schema: bytes = field(default=b"", compare=False, repr=False)
    raw_name: bytes = field(default=b"", compare=False, repr=False)


# pg_dump's object descriptions (pg_dump.c, `ArchiveEntry(... .description = ...)`),
# longest first so that "TABLE DATA" is not read as "TABLE".
_DESCS = sorted(
    """ACCESS METHOD|ACL|AGGREGATE|BLOB|BLOB METADATA|BLOBS|CAST|CHECK CONSTRAINT|COLLATION|COMMENT|CONSTRAINT|
    CONVERSION|DATABASE|DATABASE PROPERTIES|DEFAULT|DEFAULT ACL|DOMAIN|ENCODING|EVENT TRIGGER|EXTENSION|
    FK CONSTRAINT|FOREIGN DATA WRAPPER|FOREIGN SERVER|FOREIGN TABLE|FUNCTION|INDEX|INDEX ATTACH|LARGE OBJECT|
    MATERIALIZED VIEW|MATERIALIZED VIEW DATA|OPERATOR|OPERATOR CLASS|OPERATOR FAMILY|POLICY|PROCEDURAL LANGUAGE|
    PROCEDURE|PUBLICATION|PUBLICATION TABLE|PUBLICATION TABLES IN SCHEMA|ROW SECURITY|RULE|SCHEMA|SEARCHPATH|
    SECURITY LABEL|SEQUENCE|SEQUENCE OWNED BY|SEQUENCE SET|SERVER|SHELL TYPE|STATISTICS|STDSTRINGS|SUBSCRIPTION|
    TABLE|TABLE ATTACH|TABLE DATA|TEXT SEARCH CONFIGURATION|TEXT SEARCH DICTIONARY|TEXT SEARCH PARSER|
    TEXT SEARCH TEMPLATE|TRANSFORM|TRIGGER|TYPE|USER MAPPING|VIEW""".replace("\n", "")
    .replace("    ", "")
    .split("|"),
    key=len,
    reverse=True,
)
_ENTRY = re.compile(rb"^\d+; \d+ \d+ (?P<rest>.+)$")
# Left to the stack, which declares schemas and extensions, or dropped by
# --no-privileges anyway.
_SKIPPED = {"SCHEMA", "EXTENSION", "ACL", "DEFAULT ACL", "DATABASE", "DATABASE PROPERTIES"}
# Per-database settings pg_restore always handles itself.
_HEADER = {"ENCODING", "STDSTRINGS", "SEARCHPATH"}


def toc(dump: Path, encoding: str | None = None) -> list[Entry]:
    """The archive's table of contents (`pg_restore --list`); `encoding`, the
    archive's when the caller has read it already."""
    result = subprocess.run(
        [tool("pg_restore"), "--list", str(dump)], capture_output=True, env=child_env({}), check=False
    )
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        detail = stderr.strip().splitlines()
        hint = " (a plain-SQL dump: make a custom-format one with pg_dump -Fc)" if "text format" in stderr else ""
        raise BackupError(f"{dump} is not an archive pg_restore reads{hint}: {detail[-1] if detail else ''}")
    codec = codec_of(encoding or archive_encoding(dump))
    entries = []
    # Names are listed as the archive holds them, in its database's encoding,
    # each entry on one line (pg_restore writes a name's newline as a space):
    # split on that alone, never on what a name may hold (a form feed, NEL).
    for line in result.stdout.split(b"\n"):
        match = _ENTRY.match(line)
        if match is None:
            continue
        rest = match["rest"]
        known = next((d for d in _DESCS if rest.startswith(d.encode() + b" ")), None)
        first = known.encode() if known is not None else rest.split(b" ", 1)[0]
        schema, _, named = rest[len(first) + 1 :].partition(b" ")
        # The owner is the last word; a name may hold spaces.
        name = named.rpartition(b" ")[0]
        entries.append(
            Entry(line, first.decode(codec, errors="replace"), schema.decode(codec, errors="replace"),
                  name.decode(codec, errors="replace"), schema, name)
        )  # fmt: skip
    return entries


def _as_the_server_reads(
    conn: psycopg.Connection[Any], entries: Sequence[Entry], encoding: str
) -> list[tuple[str, str]]:
    """Each entry's schema and name as the server converts them from the
    archive's encoding: Python's codecs differ from PostgreSQL's on some
    characters (EUC_JP's fullwidth tilde, its circled digits) and lack some
    encodings (EUC_TW). SQL_ASCII's bytes follow no encoding to convert from:
    read as they were."""
    if encoding == "SQL_ASCII":
        return [(e.schema, e.name) for e in entries]
    names = []
    for e in entries:
        row = conn.execute(
            "SELECT convert_from(%s, %s), convert_from(%s, %s)", (e.raw_schema, encoding, e.raw_name, encoding)
        ).fetchone()
        names.append((str(row[0]), str(row[1])) if row else (e.schema, e.name))
    return names


def _plan(entries: list[Entry], schemas: Collection[str]) -> list[Entry]:
    """What the import restores, or why it cannot."""
    problems = []
    outside = sorted({e.schema for e in entries if e.schema != "-" and e.schema not in schemas})
    if outside:
        problems.append(
            f"objects in schema {', '.join(outside)}, which the stack does not declare: add it to postgres.schemas "
            "(and make up), or dump only the declared ones (pg_dump -n)"
        )
    global_ = sorted(
        {e.desc for e in entries if e.schema == "-" and e.desc not in _SKIPPED | _HEADER and e.desc != "COMMENT"}
    )
    if global_:
        problems.append(
            f"database-wide objects ({', '.join(global_)}), which need a superuser the platform's roles are not; "
            "dump without them"
        )
    if problems:
        raise BackupError("; ".join(problems) + "; nothing imported")
    # A comment on a skipped schema or extension goes with it.
    return [e for e in entries if e.desc not in _SKIPPED and not (e.desc == "COMMENT" and e.schema == "-")]


# What a dump of data alone holds: rows, and where its sequences stand.
_DATA = frozenset({"TABLE DATA", "SEQUENCE SET"})


def import_dump(target: Endpoint, dump: Path, *, schemas: Sequence[str], owner: str) -> dict[str, int]:
    """Restore a custom-format dump made elsewhere into the platform's database,
    logged in as `owner` (the migrator): every object is its own, the dump's
    owners and grants are dropped, the owner's default privileges grant the
    platform's roles, and whatever code the dump carries (a function a CHECK
    calls as rows load) runs with the owner's rights, never more. One
    transaction. A dump with definitions is refused when a schema it fills
    already holds a table; a dump of data alone (`pg_dump --data-only`) fills
    tables that exist, are empty and have no trigger of their own to rewrite
    the rows, and sets only their own sequences. Refused too when it reaches
    beyond the declared schemas. Returns each imported table's row count."""
    encoding = archive_encoding(dump)
    plan = _plan(toc(dump, encoding), schemas)
    filled = sorted({e.schema for e in plan if e.schema != "-"})
    data_only = all(e.desc in _DATA for e in plan)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        # Names read back schema-qualified, whatever the role's search path.
        conn.execute("SET search_path = pg_catalog")
        user = conn.execute("SELECT current_user").fetchone()
        if user is None or user[0] != owner:
            raise BackupError(
                f"connected as {user[0] if user else '?'!r}, not {owner!r}: an import logs in as the role that "
                "will own what it makes, so the dump's code runs with that role's rights and no more"
            )
        oids = _schema_oids(conn, filled)
        data: list[tuple[str, str]] = []
        if data_only:
            # The tables filled are named exactly: each must exist.
            data = _as_the_server_reads(conn, [e for e in plan if e.desc == "TABLE DATA"], encoding)
            sequences = _as_the_server_reads(conn, [e for e in plan if e.desc == "SEQUENCE SET"], encoding)
            _check_empty_tables(conn, data)
            _check_sequences(conn, sequences, data)
        else:
            occupied = [row[0] for row in conn.execute(_TABLES, (oids,)).fetchall()]
            if occupied:
                raise BackupError(
                    f"the schemas the dump fills already hold {', '.join(occupied)}; an import of definitions never "
                    "writes over tables: drop them first, or dump the data alone (pg_dump --data-only) to fill "
                    "them; nothing imported"
                )
    # pg_restore reads each line up to its `;`, the entry's number: the rest is for a reader.
    with tempfile.NamedTemporaryFile("wb", prefix="toc-", suffix=".list", dir=work_dir()) as listing:
        listing.write(b"".join(e.line + b"\n" for e in plan))
        listing.flush()
        with target.passfile() as env:
            result = subprocess.run(
                [tool("pg_restore"), "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
                 f"--use-list={listing.name}", "--no-password", f"--dbname={target.database}", str(dump)],
                capture_output=True, env=child_env(env), check=False,
            )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(
            f"importing {dump.name} failed, nothing imported: {result.stderr.decode(errors='replace').strip()}"
        )
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute("SET search_path = pg_catalog")
        tables: list[tuple[str, sql.Composable]]
        if data_only:
            tables = [(_shown(conn, *t), sql.Identifier(*t)) for t in data]
        else:
            names = [row[0] for row in conn.execute(_TABLES, (_schema_oids(conn, filled),)).fetchall()]
            tables = [(name, sql.SQL(name)) for name in names]
        return {name: _count(conn, table) for name, table in sorted(tables, key=lambda t: t[0])}


def _count(conn: psycopg.Connection[Any], table: sql.Composable) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    return int(row[0]) if row else 0


def _check_sequences(
    conn: psycopg.Connection[Any], sequences: Sequence[tuple[str, str]], tables: Sequence[tuple[str, str]]
) -> None:
    """A dump of data alone sets only the sequences of the tables it fills:
    another table's, set back, would hand out ids its rows already have."""
    filled = {_shown(conn, *t) for t in tables}
    problems = []
    for schema, sequence in sequences:
        name = _shown(conn, schema, sequence)
        row = conn.execute(
            "SELECT d.refobjid::regclass::text FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
            "AND d.objid = to_regclass(%s) AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')",
            (name,),
        ).fetchone()
        if row is None or row[0] not in filled:
            problems.append(f"sequence {name} belongs to no table the dump fills")
    if problems:
        raise BackupError("; ".join(problems) + "; nothing imported")


def _shown(conn: psycopg.Connection[Any], schema: str, name: str) -> str:
    """`schema.name` as Postgres writes it, quoted only where it must be."""
    row = conn.execute("SELECT format('%%I.%%I', %s::text, %s::text)", (schema, name)).fetchone()
    return str(row[0]) if row else f"{schema}.{name}"


def _check_empty_tables(conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]) -> None:
    """A dump of data alone fills tables the migrations made: each must exist,
    hold no row, and have no trigger of its own, which would rewrite the rows
    as they load (an audit trail's stamp renumbers and redates them)."""
    problems = []
    for schema, table in tables:
        name = _shown(conn, schema, table)
        exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        if exists is None or exists[0] is None:
            problems.append(f"{name} does not exist (run the migrations first: make up)")
            continue
        if _count(conn, sql.Identifier(schema, table)):
            problems.append(f"{name} holds rows")
        triggers = conn.execute(
            "SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = %s::regclass "
            "AND NOT tgisinternal",
            (name,),
        ).fetchone()
        if triggers and triggers[0]:
            problems.append(
                f"{name} has triggers ({triggers[0]}) that would rewrite the rows as they load; leave its data out "
                "(pg_dump --exclude-table-data)"
            )
    if problems:
        raise BackupError(
            "; ".join(problems) + "; an import of data fills only existing, empty tables; nothing imported"
        )
