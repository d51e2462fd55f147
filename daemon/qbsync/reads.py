"""Which table columns a mapping function reads, for `qbsync check-mapping`'s capture rule
(every column an entity's body depends on should be captured for that entity).

PostgreSQL knows exactly for some functions and not for others, so the answer says how it
was found:

* SQL functions with an SQL-standard body (`RETURN …`, `BEGIN ATOMIC … END`): exact, from
  pg_depend (PostgreSQL records each column the body uses, fields of a row parameter
  included, and each function it calls).
* SQL functions with a string body (`AS $$ … $$`): the body is compiled again as a
  temporary `BEGIN ATOMIC` copy (in a transaction that is rolled back), whose pg_depend is
  then exact; when that copy does not compile, as for PL/pgSQL.
* PL/pgSQL and other languages: found in the source text, which PostgreSQL does not analyse
  until it runs: relations named in it (qualified, or after FROM/JOIN/UPDATE through the
  function's search_path), their aliases, row variables declared as a table's row type,
  parameters of a table's row type, and records filled by `SELECT t.* INTO r` or `FOR r IN
  SELECT *`; a column counts as read when it appears as `alias.column`, or unqualified in a
  statement that names its table without an alias, or whole (`alias.*`, `to_jsonb(r)`).
  Comments and string literals are skipped; dynamic SQL (`EXECUTE`) cannot be read and is
  reported. A name that merely looks like a column of such a table counts too (the
  analysis errs on the side of reporting).
* Views the mapping reads stand for the columns of the tables under them. Functions called
  are followed (user schemas only; qbsync's own and the system's are not the shop's).

A whole-row use that PostgreSQL records without columns (`count(*)`, a row passed whole to
a function it cannot see into) adds no column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .queries import load_cli

Q = load_cli()

SKIPPED_SCHEMAS = ("pg_catalog", "information_schema", "qbsync", "qbsync_capture")
# Words after a relation that are not its alias
_KEYWORDS = """
    all and any array as asc between by case cast check collate column constraint create
    cross current_date current_time current_timestamp current_user default desc distinct do
    else end except exists false fetch for foreign from full grant group having ilike in
    inner intersect into is isnull join lateral leading left like limit localtime
    localtimestamp loop natural not notnull null offset on only or order outer overlaps
    placing primary references returning right select session_user set similar some
    symmetric table tablesample then to trailing true union unique update using values
    variadic verbose when where window with if elsif raise return perform begin declare
    exception strict nowait skip locked share key of delete insert merge matched
"""
KEYWORDS = frozenset(_KEYWORDS.split())
WHOLE_ROW_FUNCTIONS = frozenset({"to_jsonb", "to_json", "row_to_json", "jsonb_populate_record",
                                 "hstore", "row"})

_TOKEN = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*|::|[().,;*%=\[\]]|\S')
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass
class Relation:
    oid: int
    schema: str
    name: str
    kind: str
    columns: list[str]
    primary_key: list[str]
    reltype: int

    @property
    def qualified(self) -> str:
        return f"{_ident(self.schema)}.{_ident(self.name)}"


@dataclass
class Function:
    oid: int
    schema: str
    name: str
    language: str
    source: str
    sql_body: bool
    arguments: str
    result: str
    arg_names: list[str]
    arg_types: list[int]
    search_path: str | None
    comment: str | None

    @property
    def qualified(self) -> str:
        return f"{_ident(self.schema)}.{_ident(self.name)}"


@dataclass
class Reads:
    """Columns read, as (relation oid, column name); how they were found; what could not
    be analysed."""

    columns: set[tuple[int, str]] = field(default_factory=set)
    relations: set[int] = field(default_factory=set)
    functions: list[str] = field(default_factory=list)
    reached: set[int] = field(default_factory=set)           # oids of the functions followed
    methods: dict[str, str] = field(default_factory=dict)   # function -> how
    notes: list[str] = field(default_factory=list)


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


class Catalog:
    """The relations and functions of the database outside the system's and qbsync's own
    schemas, read once."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        cur = conn.cursor(row_factory=dict_row)
        self.relations: dict[int, Relation] = {}
        self.by_name: dict[tuple[str, str], Relation] = {}
        self.by_type: dict[int, Relation] = {}
        for r in cur.execute(Q.check_relations).fetchall():
            rel = Relation(int(r["oid"]), r["nspname"], r["relname"], r["relkind"],
                           list(r["columns"]), list(r["primary_key"]), int(r["reltype"]))
            self.relations[rel.oid] = rel
            self.by_name[(rel.schema, rel.name)] = rel
            self.by_type[rel.reltype] = rel
        self.functions: dict[int, Function] = {}
        self.functions_by_name: dict[tuple[str, str], list[Function]] = {}
        for f in cur.execute(Q.check_functions).fetchall():
            types = [int(t) for t in f["arg_types"] or []]
            names, modes = list(f["arg_names"] or []), f["arg_modes"]
            if modes:  # OUT and TABLE arguments are no parameters
                names = [n for n, m in zip(names, modes, strict=False) if m in ("i", "b", "v")]
            fn = Function(int(f["oid"]), f["nspname"], f["proname"], f["lanname"],
                          f["prosrc"] or "", bool(f["sql_body"]), f["arguments"], f["result"],
                          names[:len(types)], types, f["search_path"], f["comment"])
            self.functions[fn.oid] = fn
            self.functions_by_name.setdefault((fn.schema, fn.name), []).append(fn)
        row = cur.execute(Q.check_search_path).fetchone()
        self.default_path = _path(row["search_path"] if row else "public")

    def relation(self, schema: str | None, name: str, path: list[str]) -> Relation | None:
        if schema is not None:
            return self.by_name.get((schema, name))
        for s in path:
            rel = self.by_name.get((s, name))
            if rel is not None:
                return rel
        return None

    def named_functions(self, schema: str | None, name: str, path: list[str]
                        ) -> list[Function]:
        if schema is not None:
            return self.functions_by_name.get((schema, name), [])
        for s in path:
            found = self.functions_by_name.get((s, name))
            if found:
                return found
        return []


def _path(setting: str | None) -> list[str]:
    out = []
    for part in (setting or "").split(","):
        part = part.strip()
        if part.startswith('"') and part.endswith('"'):
            part = part[1:-1].replace('""', '"')
        if part and part != "$user":
            out.append(part)
    return out


class Analyser:
    """Follows a function and what it calls; `reads(oid)` for each body function."""

    def __init__(self, catalog: Catalog) -> None:
        self.cat = catalog
        self.conn = catalog.conn
        self.memo: dict[int, Reads] = {}
        self._probes = 0

    def reads(self, oid: int) -> Reads:
        out = Reads()
        seen: set[int] = set()
        todo = [oid]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            fn = self.cat.functions.get(current)
            if fn is None or fn.schema in SKIPPED_SCHEMAS:
                continue
            own = self.memo.get(current)
            if own is None:
                own, called = self._analyse(fn)
                own.functions = sorted(called)
                self.memo[current] = own
            out.columns |= own.columns
            out.relations |= own.relations
            out.functions.append(fn.qualified)
            out.reached.add(current)
            out.methods[fn.qualified] = own.methods.get(fn.qualified, "")
            out.notes += own.notes
            todo += [int(c) for c in own.functions]
        out.functions.sort()
        return out

    # -- one function --------------------------------------------------------------------

    def _analyse(self, fn: Function) -> tuple[Reads, set[int]]:
        reads = Reads()
        if fn.language == "sql" and fn.sql_body:
            called = self._depends(fn.oid, reads)
            reads.methods[fn.qualified] = "pg_depend"
            return reads, called
        if fn.language == "sql":
            probe = self._probe(fn)
            if probe is not None:
                called = self._depends(probe, reads)
                self._drop_probe()
                reads.methods[fn.qualified] = "pg_depend of a BEGIN ATOMIC copy"
                return reads, called
        if fn.language in ("sql", "plpgsql"):
            called = self._from_source(fn, reads)
            reads.methods[fn.qualified] = "source text"
            return reads, called
        reads.methods[fn.qualified] = f"not analysed ({fn.language})"
        reads.notes.append(f"{fn.qualified} is written in {fn.language}: what it reads is not "
                           "analysed")
        return reads, set()

    def _depends(self, oid: int, reads: Reads) -> set[int]:
        called: set[int] = set()
        views: list[int] = []
        for kind, ref, column in self.conn.execute(Q.check_depends, ([oid],)).fetchall():
            self._note_dependency(kind, int(ref), column, reads, called, views)
        self._expand_views(views, reads, called)
        return called

    def _note_dependency(self, kind: str, ref: int, column: str | None, reads: Reads,
                         called: set[int], views: list[int]) -> None:
        if kind == "pg_proc":
            called.add(ref)
        elif ref in self.cat.relations:
            rel = self.cat.relations[ref]
            if rel.kind == "v":
                views.append(ref)
            else:
                reads.relations.add(ref)
                if column:
                    reads.columns.add((ref, column))

    def _expand_views(self, views: list[int], reads: Reads, called: set[int]) -> None:
        seen: set[int] = set()
        while views:
            todo = [v for v in views if v not in seen]
            seen.update(todo)
            views = []
            if not todo:
                return
            for kind, ref, column in self.conn.execute(Q.check_view_depends, (todo,)).fetchall():
                self._note_dependency(kind, int(ref), column, reads, called, views)

    def _probe(self, fn: Function) -> int | None:
        """The oid of a temporary BEGIN ATOMIC copy of a string-bodied SQL function, or None
        when it does not compile (the source analysis then applies)."""
        self._probes += 1
        name = f"qbsync_check_probe_{self._probes}"
        body = fn.source.rstrip().rstrip(";")
        if not body.strip():
            return None
        try:
            self.conn.execute(Q.check_probe_savepoint)
            if fn.search_path is not None:
                self.conn.execute(Q.check_set_search_path, (fn.search_path,))
            # the DBA's own function source, compiled as one prepared statement (a body
            # that tried to end the statement early fails instead of running more)
            query = sql.SQL(Q.check_probe_function).format(
                name=sql.Identifier(name), arguments=sql.SQL(fn.arguments),  # type: ignore[arg-type]
                result=sql.SQL(fn.result), body=sql.SQL(body))  # type: ignore[arg-type]
            self.conn.execute(query, prepare=True)
            row = self.conn.execute(Q.check_probe_oid, (name,)).fetchone()
        except psycopg.Error:
            self.conn.execute(Q.check_probe_rollback)
            return None
        return int(row[0]) if row else None

    def _drop_probe(self) -> None:
        self.conn.execute(Q.check_probe_rollback)

    # -- the source text -------------------------------------------------------------------

    def _from_source(self, fn: Function, reads: Reads) -> set[int]:
        text, dynamic = clean(fn.source)
        if dynamic:
            reads.notes.append(f"{fn.qualified} runs dynamic SQL (EXECUTE): what it reads "
                               "there is not analysed")
        path = _path(fn.search_path) if fn.search_path is not None else self.cat.default_path
        tokens = _TOKEN.findall(text)
        called: set[int] = set()
        row_vars: dict[str, Relation] = {}
        # parameters of a table's row type
        for name, type_oid in zip(fn.arg_names, fn.arg_types, strict=False):
            rel = self.cat.by_type.get(type_oid)
            if rel is not None and name:
                row_vars[name.lower()] = rel
        for statement in _statements(tokens):
            self._statement(statement, path, row_vars, reads, called)
        return called

    def _statement(self, toks: list[str], path: list[str], row_vars: dict[str, Relation],
                   reads: Reads, called: set[int]) -> None:
        low = [t.lower() if not t.startswith('"') else t for t in toks]
        chains = _chains(toks)
        aliases: dict[str, Relation] = {}
        bare: list[Relation] = []
        views: list[int] = []
        # relations named, and their aliases; declarations of row variables
        for start, end, parts in chains:
            rel = None
            if len(parts) >= 2 and parts[-1] != "*":
                rel = self.cat.relation(parts[-2], parts[-1], path) if len(parts) == 2 else None
            prev = low[start - 1] if start > 0 else ""
            if rel is None and len(parts) == 1 and prev in ("from", "join", "update"):
                rel = self.cat.relation(None, parts[0], path)
            if rel is None:
                continue
            if end < len(low) and low[end] == "(":   # schema.function(...), not a relation
                continue
            reads.relations.add(rel.oid)
            if rel.kind == "v":
                views.append(rel.oid)
            nxt = end
            if nxt < len(low) and low[nxt] == "%":   # var schema.table%ROWTYPE
                if start > 0 and _is_name(toks[start - 1]):
                    row_vars[_name(toks[start - 1])] = rel
                continue
            if nxt < len(low) and low[nxt] == "as":
                nxt += 1
            if nxt < len(low) and _is_name(toks[nxt]) and low[nxt] not in KEYWORDS:
                aliases[_name(toks[nxt])] = rel
            elif start > 0 and _is_name(toks[start - 1]) and low[start - 1] not in KEYWORDS \
                    and nxt < len(low) and low[nxt] in (";", ":="):
                row_vars[_name(toks[start - 1])] = rel   # DECLARE o schema.table;
            else:
                bare.append(rel)
        self._expand_views(views, reads, called)
        # SELECT t.* INTO r / FOR r IN SELECT *: r holds rows of t
        target = _row_target(low, toks)
        star = _star_relation(low, chains, aliases, bare) if target is not None else None
        if target is not None and star is not None:
            row_vars[target] = star   # its fields count where they are used
        # columns
        for start, end, parts in chains:
            name = parts[0]
            after = low[end] if end < len(low) else ""
            if after == "(":
                fns = self.cat.named_functions(parts[-2] if len(parts) == 2 else None,
                                               parts[-1], path) if len(parts) <= 2 else []
                called.update(f.oid for f in fns if f.schema not in SKIPPED_SCHEMAS)
                continue
            holder = aliases.get(name) or row_vars.get(name)
            if len(parts) == 2 and holder is not None:
                if parts[1] == "*" and star is not None:
                    continue   # SELECT t.* INTO r: r's fields count where they are used
                self._column(holder, parts[1], reads)
            elif len(parts) == 3:
                rel = self.cat.relation(parts[0], parts[1], path)
                if rel is not None:
                    self._column(rel, parts[2], reads)
            elif len(parts) == 1 and holder is not None:
                before = low[start - 2] if start >= 2 else ""
                if start >= 1 and low[start - 1] == "(" and before in WHOLE_ROW_FUNCTIONS:
                    for column in holder.columns:
                        reads.columns.add((holder.oid, column))
            elif len(parts) == 1 and bare and (start == 0 or low[start - 1] != "."):
                for rel in bare:
                    if name in rel.columns:
                        reads.columns.add((rel.oid, name))

    def _column(self, rel: Relation, part: str, reads: Reads) -> None:
        reads.relations.add(rel.oid)
        if part == "*":
            reads.columns.update((rel.oid, c) for c in rel.columns)
        elif part in rel.columns:
            reads.columns.add((rel.oid, part))


def clean(source: str) -> tuple[str, bool]:
    """The source without comments and with every string literal (quoted or dollar-quoted)
    made empty; and whether it runs dynamic SQL."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if source.startswith("--", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == "'":
            j = i + 1
            while j < n:
                if source.startswith("''", j) or (
                        source[j] == "\\" and i > 0 and source[i - 1] in "eE"):
                    j += 2   # a quote doubled, or a backslash escape of an E'' string
                elif source[j] == "'":
                    break
                else:
                    j += 1
            out.append("''")
            i = j + 1
        elif ch == "$" and (match := _DOLLAR.match(source, i)) and \
                (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            tag = match.group(0)
            end = source.find(tag, match.end())
            out.append("''")
            i = n if end < 0 else end + len(tag)
        elif ch == '"':
            end = i + 1
            while end < n and not (source[end] == '"' and not source.startswith('""', end)):
                end += 2 if source.startswith('""', end) else 1
            out.append(source[i:end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    text = "".join(out)
    return text, re.search(r"\bexecute\b", text, re.IGNORECASE) is not None


def _statements(tokens: list[str]) -> Iterable[list[str]]:
    current: list[str] = []
    for tok in tokens:
        if tok == ";":
            current.append(tok)
            yield current
            current = []
        else:
            current.append(tok)
    if current:
        yield current


def _is_name(tok: str) -> bool:
    return tok.startswith('"') or bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", tok))


def _unquote(tok: str) -> str:
    return tok[1:-1].replace('""', '"') if tok.startswith('"') else tok.lower()


def _name(tok: str) -> str:
    return _unquote(tok)


def _chains(tokens: list[str]) -> list[tuple[int, int, list[str]]]:
    """(start, end, parts) of each dotted name (a.b.c, a.*), end exclusive; a name after
    `::` (a type) or `%` is not one."""
    out = []
    i, n = 0, len(tokens)
    while i < n:
        if _is_name(tokens[i]) and not (i > 0 and tokens[i - 1] in ("::", ".", "%")):
            parts = [tokens[i]]
            j = i + 1
            while j + 1 < n and tokens[j] == "." and (_is_name(tokens[j + 1])
                                                      or tokens[j + 1] == "*"):
                parts.append(tokens[j + 1])
                j += 2
            out.append((i, j, parts))
            i = j
        else:
            i += 1
    return [(s, e, [_unquote(p) if p != "*" else p for p in parts]) for s, e, parts in out]


def _row_target(low: list[str], toks: list[str]) -> str | None:
    """r of `SELECT … INTO r …` (not INSERT INTO) or `FOR r IN SELECT …`."""
    for i, tok in enumerate(low):
        if tok == "into" and i + 1 < len(low) and (i == 0 or low[i - 1] != "insert") \
                and "select" in low[:i] and _is_name(toks[i + 1]):
            if i + 2 < len(low) and low[i + 2] == ",":
                return None   # several targets: columns, not a row
            return _name(toks[i + 1])
        if tok == "for" and i + 3 < len(low) and low[i + 2] == "in" and low[i + 3] == "select":
            return _name(toks[i + 1])
    return None


def _star_relation(low: list[str], chains: list[tuple[int, int, list[str]]],
                   aliases: dict[str, Relation], bare: list[Relation]) -> Relation | None:
    """The relation whose whole rows a `SELECT t.* …` or `SELECT * …` of one relation
    returns (not `count(*)`)."""
    for _, _, parts in chains:
        if len(parts) == 2 and parts[1] == "*" and parts[0] in aliases:
            return aliases[parts[0]]
    star = any(tok == "*" and i > 0 and low[i - 1] in ("select", ",", "distinct")
               for i, tok in enumerate(low))
    if star and len(bare) + len(aliases) == 1:
        return bare[0] if bare else next(iter(aliases.values()))
    return None
