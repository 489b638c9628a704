#!/usr/bin/env python3
"""ClickHouse's HTTP interface over the ClickHouse engine that PyPI's chdb-core embeds.

Development and test machines of Cairn have no ClickHouse server package new enough (Debian's is
from 2018) and no container engine, but PyPI ships the ClickHouse 26.x engine as a library. This
server puts ClickHouse's HTTP protocol in front of it, so Cairn's services (the Rust `clickhouse`
crate) talk to it exactly as they talk to a real ClickHouse server in production:

* ``GET|HEAD /ping`` and ``GET /`` answer ``Ok.``
* ``GET|POST /?query=SQL``; a POST body is appended to the query, as ClickHouse does.
* ``INSERT ... FORMAT X`` with the data in the body (plain or chunked), streamed into the engine.
* ``database=``, ``default_format=``, ``param_NAME=`` (server-side query parameters); every other
  URL parameter is applied as a setting for that request.
* A ``multipart/form-data`` body carrying the ``query`` and ``param_NAME`` fields (how the Rust
  crate sends queries with parameters, as ClickHouse accepts them).
* Credentials through ``X-ClickHouse-User``/``X-ClickHouse-Key``, Basic auth or ``user``/``password``
  parameters: the server's own account (``--user``/``--password``; not checked without a password)
  and the accounts made with ClickHouse's access statements (below), always checked.
* Access management, the subset Cairn's operator uses to give the query service a read-only
  account (the embedded engine runs every statement as its one user and has no writable access
  storage, so these are kept here, in ``<data>.access.json``): ``CREATE USER [IF NOT EXISTS]`` and
  ``ALTER USER`` with ``IDENTIFIED WITH sha256_hash BY '<hex>' SALT '<salt>'`` and an optional
  ``SETTINGS readonly = N``; ``GRANT SELECT ON <db>.* TO <user>``; ``DROP USER [IF EXISTS]``; ``SHOW USERS``. Such an
  account's statements run with its ``readonly`` (it cannot lower it), and a statement that names a
  database it has no grant on is refused with ACCESS_DENIED (a textual check: real ClickHouse checks
  grants on the analysed query).
* Not spoken: ClickHouse's block compression of request and response bodies (the ``compress`` and
  ``decompress`` parameters, ``CAIRN_CLICKHOUSE_COMPRESSION=lz4``); the parameters are accepted and
  ignored, so a compressed insert fails. Cairn uses compression only against real servers.
* ``system.query_log``, as a ClickHouse server keeps it by default (the engine alone keeps none):
  the engine is started with a configuration that turns it on (``<data>.config.xml``), so
  statements' ``log_comment`` and durations are there to read, as Cairn's operator reads them.
* Replicated tables can be created (engine arguments, macros, Keeper paths checked): the same
  configuration gives the engine the in-process Keeper stand-in and the ``{shard}``/``{replica}``
  macros of one replica of one shard. They cannot be written: the engine does not run the
  replication threads, so a replica stays read-only. Not ``ON CLUSTER`` (no distributed DDL) and
  not ``Distributed`` tables (no native TCP port to reach).
* Errors as HTTP 500 (401 for authentication) with ``X-ClickHouse-Exception-Code`` and ClickHouse's
  ``Code: N. DB::Exception: ...`` text.

It is a test bed, not a product: one process owns one data directory, and a pool of engine
sessions on that directory serves requests in parallel.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb.session

# The engine's configuration: the query log a ClickHouse server keeps by default (flushed every
# 7.5 seconds, every statement logged), which the engine alone does not keep; and the in-process
# Keeper stand-in (ClickHouse's test keeper) with the `{shard}`/`{replica}` macros of one replica of
# one shard, so that Replicated tables (cluster mode's local tables) can be created here (not
# written: the engine runs no replication threads, and its replicas stay read-only).
# ON CLUSTER and Distributed tables cannot: the engine has no distributed DDL queue and no native
# TCP port for a Distributed table to reach.
ENGINE_CONFIG = """<clickhouse>
  <query_log>
    <database>system</database>
    <table>query_log</table>
    <flush_interval_milliseconds>7500</flush_interval_milliseconds>
  </query_log>
  <profiles><default><log_queries>1</log_queries></default></profiles>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <macros><shard>01</shard><replica>replica-1</replica></macros>
</clickhouse>
"""

# URL parameters that are part of the protocol, not settings.
PROTOCOL_PARAMS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress",
    "wait_end_of_query", "buffer_size", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "role",
    "default_database", "output_format_json_quote_64bit_integers",
}

INSERT_WITH_FORMAT = re.compile(
    r"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*\r?\n?(.*)\Z",
    re.IGNORECASE | re.DOTALL,
)
HAS_FORMAT = re.compile(r"\bFORMAT\s+[A-Za-z0-9_]+\s*;?\s*\Z", re.IGNORECASE)
ERROR_CODE = re.compile(r"Code:\s*(\d+)")
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SessionPool:
    """Engine sessions on one path; each request borrows one."""

    def __init__(self, path, size):
        self._free = queue.Queue()
        self._sessions = []
        for _ in range(size):
            s = chdb.session.Session(path)
            self._sessions.append(s)
            self._free.put([s, None])  # session, its current database

    def acquire(self):
        return self._free.get()

    def release(self, entry):
        self._free.put(entry)

    def close(self):
        for s in self._sessions:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - closing on the way out
                pass


class ClickHouseError(Exception):
    def __init__(self, code, message, status=500):
        super().__init__(message)
        self.code = code
        self.status = status


def parse_multipart(body, content_type):
    """The fields of a multipart/form-data body, as text."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ClickHouseError(1, "Code: 1. DB::Exception: multipart body without a boundary", status=400)
    delimiter = b"--" + m.group(1).encode()
    fields = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, _, value = part.partition(b"\r\n\r\n")
        if value.endswith(b"\r\n"):
            value = value[:-2]
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = value.decode("utf-8", errors="surrogateescape")
    return fields


def quote_setting(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Errors raised while an inserted block is written, which chdb's streaming insert does not
# report (see run_insert).
SILENT_INSERT_ERRORS = ("VIOLATED_CONSTRAINT", "TOO_MANY_PARTS", "MEMORY_LIMIT_EXCEEDED", "TOO_MANY_PARTITIONS")


def insert_error_counts(session):
    """system.errors' count, last message and code of each error in SILENT_INSERT_ERRORS."""
    names = ", ".join(f"'{n}'" for n in SILENT_INSERT_ERRORS)
    text = session.query(
        f"SELECT name, value, code, replaceAll(last_error_message, '\\n', ' ') FROM system.errors "
        f"WHERE name IN ({names})", "TSVRaw")
    out = {}
    for line in str(text).splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            out[parts[0]] = (int(parts[1]), parts[3], int(parts[2]))
    return out


READ_ONLY_STATEMENT = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)


RUNNING_IDS = set()
RUNNING_LOCK = threading.Lock()

NAME = r"(`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_]*)"
IDENTIFIED = r"IDENTIFIED\s+WITH\s+sha256_hash\s+BY\s+'([0-9a-fA-F]{64})'\s+SALT\s+'([^'\\]*)'"
USER_SETTINGS = r"(?:\s+SETTINGS\s+readonly\s*=\s*([012]))?"
CREATE_USER = re.compile(rf"^\s*CREATE\s+USER\s+(IF\s+NOT\s+EXISTS\s+)?{NAME}\s+{IDENTIFIED}{USER_SETTINGS}\s*;?\s*\Z", re.I)
ALTER_USER = re.compile(rf"^\s*ALTER\s+USER\s+(IF\s+EXISTS\s+)?{NAME}\s+{IDENTIFIED}{USER_SETTINGS}\s*;?\s*\Z", re.I)
GRANT_SELECT = re.compile(rf"^\s*GRANT\s+SELECT\s+ON\s+{NAME}\.\*\s+TO\s+{NAME}\s*;?\s*\Z", re.I)
DROP_USER = re.compile(rf"^\s*DROP\s+USER\s+(IF\s+EXISTS\s+)?{NAME}\s*;?\s*\Z", re.I)
ACCESS_STATEMENT = re.compile(r"^\s*(CREATE\s+USER|ALTER\s+USER|DROP\s+USER|GRANT|REVOKE|CREATE\s+ROLE|SET\s+ROLE|SHOW\s+USERS)\b", re.I)
SHOW_USERS = re.compile(r"^\s*SHOW\s+USERS\s*;?\s*\Z", re.I)


def unquote_name(name):
    if name.startswith("`"):
        return name[1:-1].replace("``", "`")
    return name


class AccessStore:
    """The accounts made with access statements: name -> {hash, salt, readonly, databases}."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.users = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.users = json.load(f)

    def _save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.users, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def get(self, name):
        with self.lock:
            u = self.users.get(name)
            return dict(u) if u else None

    def execute(self, sql, fmt="TabSeparated"):
        """Runs an access statement and returns its answer; None when `sql` is not one."""
        if not ACCESS_STATEMENT.match(sql):
            return None
        with self.lock:
            if SHOW_USERS.match(sql):
                if fmt.startswith("JSONEachRow"):
                    return "".join(json.dumps({"name": n}) + "\n" for n in sorted(self.users)).encode()
                return "".join(f"{n}\n" for n in sorted(self.users)).encode()
            m = CREATE_USER.match(sql)
            if m:
                name = unquote_name(m.group(2))
                if name in self.users:
                    if m.group(1):
                        return b""
                    raise ClickHouseError(
                        493, f"Code: 493. DB::Exception: user `{name}`: cannot insert because user `{name}` already exists "
                        "in local_directory. (ACCESS_ENTITY_ALREADY_EXISTS)")
                self.users[name] = {"hash": m.group(3).lower(), "salt": m.group(4),
                                    "readonly": int(m.group(5) or 0), "databases": []}
                self._save()
                return b""
            m = ALTER_USER.match(sql)
            if m:
                name = unquote_name(m.group(2))
                if name not in self.users:
                    if m.group(1):
                        return b""
                    raise ClickHouseError(
                        192, f"Code: 192. DB::Exception: There is no user `{name}` in user directories. (UNKNOWN_USER)")
                u = self.users[name]
                u.update({"hash": m.group(3).lower(), "salt": m.group(4)})
                if m.group(5) is not None:
                    u["readonly"] = int(m.group(5))
                self._save()
                return b""
            m = GRANT_SELECT.match(sql)
            if m:
                db, name = unquote_name(m.group(1)), unquote_name(m.group(2))
                if name not in self.users:
                    raise ClickHouseError(
                        511, f"Code: 511. DB::Exception: There is no role `{name}` in user directories. (UNKNOWN_ROLE)")
                if db not in self.users[name]["databases"]:
                    self.users[name]["databases"].append(db)
                    self._save()
                return b""
            m = DROP_USER.match(sql)
            if m:
                name = unquote_name(m.group(2))
                if name not in self.users:
                    if m.group(1):
                        return b""
                    raise ClickHouseError(
                        192, f"Code: 192. DB::Exception: There is no user `{name}` in user directories. (UNKNOWN_USER)")
                del self.users[name]
                self._save()
                return b""
        raise ClickHouseError(
            48, "Code: 48. DB::Exception: this form of access statement is not implemented by the test bed's "
            "server (chserver.py). (NOT_IMPLEMENTED)")


def names_other_database(sql, allowed, databases):
    """The first database in `databases` (other than `allowed` and the system ones) that `sql` names
    as `db.` or `` `db`. ``, if any."""
    for db in databases:
        if db in allowed or db.lower() in ("system", "information_schema"):
            continue
        pattern = r"(?<![A-Za-z0-9_`.])(" + re.escape(db) + r"|`" + re.escape(db.replace("`", "``")) + r"`)\s*\."
        if re.search(pattern, sql):
            return db
    return None


def as_clickhouse_error(exc):
    text = str(exc)
    m = ERROR_CODE.search(text)
    if m:
        return ClickHouseError(int(m.group(1)), text[m.start():].strip())
    return ClickHouseError(1001, "Code: 1001. DB::Exception: " + text.strip())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as ClickHouse's own server sets: the headers and the body go out as two
    # writes, and with Nagle's algorithm the body waited for the client's delayed ACK of the
    # headers (40 ms on Linux) on every kept-alive connection: a point lookup took 52 ms.
    disable_nagle_algorithm = True
    server_version = "cairn-chserver"
    pool = None
    user = "default"
    password = None
    access = AccessStore(None)
    account = None

    def log_message(self, fmt, *args):  # quiet by default; errors are logged explicitly
        pass

    # ---- request body -------------------------------------------------------------------------
    def body_chunks(self):
        """Yields the request body, decoding chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until an empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining > 0:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        return
                    remaining -= len(data)
                    yield data
                self.rfile.readline()  # CRLF after each chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    return
                remaining -= len(data)
                yield data

    # ---- responses ----------------------------------------------------------------------------
    def reply(self, status, body=b"", content_type="text/plain; charset=UTF-8", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_error(self, err):
        body = (str(err).rstrip() + "\n").encode()
        self.reply(err.status, body, headers={"X-ClickHouse-Exception-Code": str(err.code)})

    # ---- auth ---------------------------------------------------------------------------------
    def check_auth(self, params):
        """The account the request runs as: None for the server's own, else the access store's
        entry (with its name)."""
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        key = self.headers.get("X-ClickHouse-Key") or params.get("password")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:  # noqa: BLE001 - malformed header means no credentials
                pass
        account = self.access.get(user) if user and user != self.user else None
        if account is not None:
            digest = hashlib.sha256(((key or "") + account["salt"]).encode()).hexdigest()
            if hmac.compare_digest(digest, account["hash"]):
                account["name"] = user
                return account
        elif self.password is None or ((user or "default") == self.user and hmac.compare_digest(key or "", self.password)):
            return None
        raise ClickHouseError(
            516,
            f"Code: 516. DB::Exception: {user or 'default'}: Authentication failed: password is incorrect, "
            "or there is no user with such name. (AUTHENTICATION_FAILED)",
            status=401,
        )

    # ---- methods ------------------------------------------------------------------------------
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.handle_request(read_body=False)

    def do_POST(self):
        self.handle_request(read_body=True)

    def handle_request(self, read_body):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            if url.path in ("/ping", "/ping/"):
                self.drain(read_body)
                return self.reply(200, b"Ok.\n")
            if url.path not in ("/", ""):
                self.drain(read_body)
                raise ClickHouseError(1002, f"Code: 1002. DB::Exception: no handler for {url.path}", status=404)
            self.account = self.check_auth(params)
            query = params.get("query", "")
            if not query and not read_body:
                return self.reply(200, b"Ok.\n")
            self.execute(query, params, read_body)
        except ClickHouseError as e:
            self.reply_error(e)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - every engine error becomes a ClickHouse error
            self.reply_error(as_clickhouse_error(e))

    def drain(self, read_body):
        if read_body:
            for _ in self.body_chunks():
                pass

    def execute(self, query, params, read_body):
        # A query id names one running query, as on a real server: a second query with the id of
        # one still running is refused (QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING), which is how
        # Cairn's operator keeps a backfill from running twice.
        query_id = params.get("query_id")
        if query_id:
            with RUNNING_LOCK:
                if query_id in RUNNING_IDS:
                    raise ClickHouseError(
                        216,
                        f"Code: 216. DB::Exception: Query with id = {query_id} is already running. "
                        "(QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING)",
                    )
                RUNNING_IDS.add(query_id)
            try:
                return self.execute_one(query, params, read_body)
            finally:
                with RUNNING_LOCK:
                    RUNNING_IDS.discard(query_id)
        return self.execute_one(query, params, read_body)

    def execute_one(self, query, params, read_body):
        settings = {}
        query_params = {}
        for k, v in params.items():
            if k.startswith("param_"):
                query_params[k[len("param_"):]] = v
            elif k not in PROTOCOL_PARAMS:
                if not SETTING_NAME.match(k):
                    raise ClickHouseError(115, f"Code: 115. DB::Exception: Unknown setting '{k}'. (UNKNOWN_SETTING)")
                settings[k] = v
        database = params.get("database") or self.headers.get("X-ClickHouse-Database")
        fmt_default = params.get("default_format") or self.headers.get("X-ClickHouse-Format") or "TabSeparated"

        content_type = self.headers.get("Content-Type", "")
        if read_body and content_type.lower().startswith("multipart/form-data"):
            fields = parse_multipart(b"".join(self.body_chunks()), content_type)
            for k, v in fields.items():
                if k.startswith("param_"):
                    query_params[k[len("param_"):]] = v
            return self.run_query(database, settings, query_params, fields.get("query", query), fmt_default)

        body_iter = self.body_chunks() if read_body else iter(())
        insert = INSERT_WITH_FORMAT.match(query) if query else None
        if insert is None:
            # The body continues the query (ClickHouse semantics). Read it all; then it may itself
            # be an INSERT with its data inline.
            body = b"".join(body_iter)
            text = query + ("\n" if query and body else "") + body.decode("utf-8", errors="surrogateescape")
            insert = INSERT_WITH_FORMAT.match(text)
            if insert is not None:
                head, fmt, rest = insert.group(1), insert.group(2), insert.group(3)
                data = [rest.encode("utf-8", errors="surrogateescape")] if rest else []
                return self.run_insert(database, settings, head, fmt, iter(data))
            return self.run_query(database, settings, query_params, text, fmt_default)
        head, fmt, rest = insert.group(1), insert.group(2), insert.group(3)
        first = [rest.encode("utf-8", errors="surrogateescape")] if rest else []

        def chained():
            yield from first
            yield from body_iter

        return self.run_insert(database, settings, head, fmt, chained())

    def with_session(self, database, fn):
        entry = self.pool.acquire()
        try:
            session = entry[0]
            wanted = database or "default"
            if entry[1] != wanted:
                session.query(f"USE `{wanted.replace('`', '')}`")
                entry[1] = wanted
            return fn(session)
        except Exception:
            # A failed USE leaves the session's database unknown.
            entry[1] = None
            raise
        finally:
            self.pool.release(entry)

    def check_account(self, database, settings, sql):
        """What an access-store account may not do: lower its readonly, write when read-only,
        manage access, or touch a database it has no grant on."""
        account = getattr(self, "account", None)
        if account is None:
            return settings
        name = account["name"]
        settings = dict(settings)
        if account["readonly"]:
            asked = settings.get("readonly", "")
            if asked not in ("", str(account["readonly"])) and (not asked.isdigit() or int(asked) < account["readonly"]):
                raise ClickHouseError(
                    164, "Code: 164. DB::Exception: Cannot modify 'readonly' setting in readonly mode. (READONLY)")
            settings["readonly"] = str(account["readonly"])
        if ACCESS_STATEMENT.match(sql):
            raise ClickHouseError(
                497, f"Code: 497. DB::Exception: {name}: Not enough privileges. To execute this query, it's necessary "
                "to have the grant ACCESS MANAGEMENT ON *.*. (ACCESS_DENIED)")
        allowed = set(account["databases"])
        denied = None
        if database and database not in allowed and database.lower() not in ("system", "information_schema", "default"):
            denied = database
        if denied is None:
            names = self.with_session(None, lambda s: str(s.query("SELECT name FROM system.databases", "TSVRaw")))
            denied = names_other_database(sql, allowed, names.splitlines())
        if denied is not None:
            raise ClickHouseError(
                497, f"Code: 497. DB::Exception: {name}: Not enough privileges. To execute this query, it's necessary "
                f"to have the grant SELECT ON {denied}.*. (ACCESS_DENIED)")
        return settings

    def run_insert(self, database, settings, head, fmt, chunks):
        settings = self.check_account(database, settings, head)
        if settings.get("readonly", "0") not in ("0", ""):
            raise ClickHouseError(164, "Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)")
        settings.pop("readonly", None)
        if settings:
            head += " SETTINGS " + ", ".join(f"{k} = {quote_setting(v)}" for k, v in settings.items())
        started = time.monotonic()

        def go(session):
            before = insert_error_counts(session)
            inserter = session.send_insert(head, fmt)
            try:
                for chunk in chunks:
                    if chunk:
                        inserter.append(chunk)
            except Exception:
                try:
                    inserter.cancel()
                except Exception:  # noqa: BLE001
                    pass
                raise
            result = inserter.finish()
            # chdb's streaming insert swallows errors raised while the block is written (a
            # violated constraint: rows_written says 1, nothing is stored, finish() returns). A
            # real server answers them with an error; so does this one, from system.errors.
            after = insert_error_counts(session)
            for name, (count, message, code) in after.items():
                if count > before.get(name, (0, "", 0))[0]:
                    raise ClickHouseError(code, f"Code: {code}. DB::Exception: {message}. ({name})")
            return result

        res = self.with_session(database, go)
        summary = {
            "read_rows": "0", "read_bytes": "0",
            "written_rows": str(getattr(res, "rows_written", 0)),
            "written_bytes": str(getattr(res, "bytes_written", 0)),
            "elapsed_ns": str(int((time.monotonic() - started) * 1e9)),
        }
        self.reply(200, b"", headers={"X-ClickHouse-Summary": json.dumps(summary)})

    def run_query(self, database, settings, query_params, sql, fmt_default):
        sql = sql.strip()
        if sql.endswith(";"):
            sql = sql[:-1]
        fmt = fmt_default
        m = HAS_FORMAT.search(sql)
        if m:
            fmt = m.group(0).split()[1].rstrip(";")

        # `readonly` cannot be set on a pooled session and reset afterwards (readonly mode
        # forbids changing it back), so it is enforced here: a real server refuses anything but
        # reading in a query that carries readonly=1 or 2.
        settings = self.check_account(database, settings, sql)
        answer = self.access.execute(sql, fmt) if getattr(self, "account", None) is None else None
        if answer is not None:
            return self.reply(200, answer, headers={"X-ClickHouse-Summary": json.dumps({"read_rows": "0"})})
        readonly = settings.pop("readonly", "0")
        if readonly not in ("0", "") and not READ_ONLY_STATEMENT.match(sql):
            raise ClickHouseError(164, "Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)")

        def go(session):
            applied = []
            try:
                for k, v in settings.items():
                    session.query(f"SET {k} = {quote_setting(v)}")
                    applied.append(k)
                return session.query(sql, fmt, params=query_params or None)
            finally:
                for k in applied:
                    try:
                        session.query(f"SET {k} = DEFAULT")
                    except Exception:  # noqa: BLE001 - best effort
                        pass

        res = self.with_session(database, go)
        if getattr(res, "has_error", lambda: False)():
            raise as_clickhouse_error(res.error_message())
        body = res.bytes() if res is not None else b""
        summary = {
            "read_rows": str(getattr(res, "rows_read", lambda: 0)()),
            "read_bytes": str(getattr(res, "bytes_read", lambda: 0)()),
            "written_rows": "0", "written_bytes": "0",
        }
        ctype = "application/json; charset=UTF-8" if fmt.upper().startswith("JSON") else "text/plain; charset=UTF-8"
        if "RowBinary" in fmt or fmt in ("Native", "Parquet", "Arrow"):
            ctype = "application/octet-stream"
        self.reply(200, body, content_type=ctype,
                   headers={"X-ClickHouse-Format": fmt, "X-ClickHouse-Summary": json.dumps(summary)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data directory of the engine")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18123)
    ap.add_argument("--sessions", type=int, default=int(os.environ.get("CHSERVER_SESSIONS", "4")))
    ap.add_argument("--user", default=os.environ.get("CHSERVER_USER", "default"))
    ap.add_argument("--password", default=os.environ.get("CHSERVER_PASSWORD"))
    args = ap.parse_args()

    os.makedirs(args.data, exist_ok=True)
    config = os.path.normpath(args.data) + ".config.xml"
    with open(config, "w", encoding="utf-8") as f:
        f.write(ENGINE_CONFIG)
    pool = SessionPool(f"{args.data}?config-file={config}", args.sessions)
    Handler.pool = pool
    Handler.user = args.user
    Handler.password = args.password or None
    Handler.access = AccessStore(os.path.normpath(args.data) + ".access.json")

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((args.host, args.port), Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chserver listening on http://{args.host}:{args.port} data={args.data}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
