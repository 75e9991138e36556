"""ClickHouse's HTTP interface, served by the embedded chDB engine.

No modern ClickHouse server can be installed from the registries our machines
reach, and a chDB data directory can be opened by one process only. So one
process owns the chDB engine and speaks ClickHouse's HTTP protocol in front of
it: clickhouse-connect, curl and dashboard tools talk to it exactly as to a
ClickHouse server (queries, inserts in any input format, compression both
ways, sessions, settings, query parameters, the ``database`` parameter, and
errors as ClickHouse returns them). Statements run one at a time on one chDB
connection, which is the engine's own limit rather than the protocol's.

What it does not do: external tables sent as multipart files, ClickHouse's
native block compression (``compress=1``/``decompress=1``), and temporary
tables scoped to a session (they are visible to every session). Each of these
answers with ClickHouse's NOT_IMPLEMENTED error, never with a wrong result.

Run it with ``python -m connectors.chdb_server --data-dir DIR --port 8123``.
"""

from __future__ import annotations

import argparse
import base64
import bz2
import email.parser
import email.policy
import gzip
import json
import logging
import lzma
import re
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.frame
import zstandard

log = logging.getLogger("orderscope.chdb_server")

DEFAULT_OUTPUT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT_S = 60.0
SERVER_DISPLAY_NAME = "orderscope-chdb"

# URL parameters the HTTP layer consumes itself; every other parameter (except
# param_*, the query parameters) is a ClickHouse setting for that request.
HTTP_PARAMETERS = frozenset(
    {
        "query", "database", "default_format", "query_id", "session_id", "session_timeout",
        "session_check", "user", "password", "quota_key", "compress", "decompress",
        "buffer_size", "wait_end_of_query", "enable_http_compression",
        "http_zlib_compression_level", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
        "client_protocol_version", "role",
    }
)  # fmt: skip

# ClickHouse's own mapping from exception name to HTTP status
# (src/Server/HTTPHandler.cpp, exceptionCodeToHTTPStatus); all others are 500.
_STATUS_BY_ERROR_NAME: dict[str, HTTPStatus] = {
    "REQUIRED_PASSWORD": HTTPStatus.UNAUTHORIZED,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "ACCESS_DENIED",
         "SET_NON_GRANTED_ROLE", "DATABASE_ACCESS_DENIED"),
        HTTPStatus.FORBIDDEN,
    ),
    **dict.fromkeys(
        ("CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
         "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
         "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
         "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN",
         "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "TOO_DEEP_AST",
         "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA",
         "TYPE_MISMATCH", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
        HTTPStatus.BAD_REQUEST,
    ),
    **dict.fromkeys(
        ("UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
         "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING",
         "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE",
         "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"),
        HTTPStatus.NOT_FOUND,
    ),
    "QUERY_IS_TOO_LARGE": HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    "NOT_IMPLEMENTED": HTTPStatus.NOT_IMPLEMENTED,
    "SOCKET_TIMEOUT": HTTPStatus.SERVICE_UNAVAILABLE,
    "CANNOT_OPEN_FILE": HTTPStatus.SERVICE_UNAVAILABLE,
    "TIMEOUT_EXCEEDED": HTTPStatus.REQUEST_TIMEOUT,
}  # fmt: skip

_ENGINE_ERROR = re.compile(r"Code: (?P<code>\d+)\..*?(?:\((?P<name>[A-Z][A-Z0-9_]+)\))?\s*$", re.S)
_DATA_INSERT = re.compile(
    rb"\s*(?P<head>INSERT\s+INTO\s+.*?)\s+(?:FORMAT\s+(?P<format>\w+)|(?P<values>VALUES))(?:[ \t]*\r?\n|\s|$)",
    re.I | re.S,
)
_HEADER_SCAN_LIMIT = 1 << 16
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_SET_STATEMENT = re.compile(r"\s*SET\s+(?P<assignments>.+?)\s*;?\s*$", re.I | re.S)
_ASSIGNMENT = re.compile(r"\s*(?P<name>\w+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'|[^,]+?)\s*(?:,|$)", re.S)
_USE_STATEMENT = re.compile(r"\s*USE\s+`?(?P<database>\w+)`?\s*;?\s*$", re.I)
_READ_ONLY_STATEMENT = re.compile(r"\s*\(*\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.I)
_SETTING_NAME = re.compile(r"\w+")

_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    "lz4": lz4.frame.decompress,
    "xz": lzma.decompress,
    "bz2": bz2.decompress,
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "lz4": lz4.frame.compress,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: a numeric code, a name and a message."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def of(cls, code: int, name: str, message: str) -> ClickHouseError:
        return cls(code, name, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_engine(cls, error: Exception) -> ClickHouseError:
        text = str(error).strip()
        match = _ENGINE_ERROR.match(text)
        if match is None:
            return cls.of(1001, "STD_EXCEPTION", text)
        return cls(int(match["code"]), match["name"] or "", text)

    @property
    def http_status(self) -> HTTPStatus:
        return _STATUS_BY_ERROR_NAME.get(self.name, HTTPStatus.INTERNAL_SERVER_ERROR)


def not_implemented(what: str) -> ClickHouseError:
    return ClickHouseError.of(48, "NOT_IMPLEMENTED", f"{what} is not supported by the embedded server")


@dataclass(frozen=True)
class Statement:
    """One statement; for an insert with data, the INSERT head and its data."""

    sql: str
    insert_head: str | None = None
    data_format: str = ""
    data: bytes = b""

    @classmethod
    def parse(cls, query_param: str, body: bytes) -> Statement:
        # ClickHouse reads the query parameter, a newline, then the body, as one stream.
        source = query_param.encode() + b"\n" + body if query_param and body else query_param.encode() or body
        match = _DATA_INSERT.match(source, 0, min(len(source), _HEADER_SCAN_LIMIT))
        if match is not None and not re.search(rb"\bSELECT\b", match["head"], re.I):
            head = match["head"].decode()
            data_format = match["format"].decode() if match["format"] else "Values"
            return cls(sql=head, insert_head=head, data_format=data_format, data=source[match.end() :])
        return cls(sql=source.decode("utf-8", errors="replace").strip())

    @property
    def is_read_only(self) -> bool:
        return self.insert_head is None and _READ_ONLY_STATEMENT.match(self.sql) is not None

    def output_format(self, default: str) -> str:
        match = _TRAILING_FORMAT.search(self.sql) if self.insert_head is None else None
        return match[1] if match else default

    def assignments(self) -> dict[str, str] | None:
        """The settings a SET statement assigns, or None for any other statement."""
        match = _SET_STATEMENT.fullmatch(self.sql) if self.insert_head is None else None
        if match is None:
            return None
        return {m["name"]: _unquote(m["value"]) for m in _ASSIGNMENT.finditer(match["assignments"])}

    def used_database(self) -> str | None:
        match = _USE_STATEMENT.fullmatch(self.sql) if self.insert_head is None else None
        return match["database"] if match else None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Session:
    """What ClickHouse keeps between requests that share a ``session_id``."""

    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    expires_at: float = 0.0


@dataclass(frozen=True)
class Outcome:
    body: bytes
    summary: dict[str, str]


class Engine:
    """The chDB engine, one statement at a time, each in its own settings scope."""

    def __init__(self, data_dir: str) -> None:
        self._connection = chdb.connect(data_dir)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.version = self._scalar("SELECT version()")
        self.timezone = self._scalar("SELECT timezone()")

    def _scalar(self, sql: str) -> str:
        return bytes(self._connection.query(sql, "TSVRaw").bytes()).decode().strip()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def execute(
        self,
        statement: Statement,
        *,
        output_format: str,
        settings: dict[str, str],
        database: str | None,
        query_parameters: dict[str, str],
    ) -> Outcome:
        started = time.perf_counter()
        with self._lock, self._scope(settings, database):
            try:
                if statement.insert_head is not None:
                    inserter = self._connection.send_insert(statement.insert_head, statement.data_format)
                    inserter.append(statement.data)
                    result = inserter.finish()
                    body = b""
                else:
                    result = self._connection.query(statement.sql, output_format, params=query_parameters or None)
                    body = bytes(result.bytes() or b"")
            except Exception as error:  # chDB raises one exception type for every engine error
                raise ClickHouseError.from_engine(error) from None
        return Outcome(body, _summary(result, time.perf_counter() - started))

    @contextmanager
    def _scope(self, settings: dict[str, str], database: str | None) -> Iterator[None]:
        """Apply a request's settings and database, and undo them afterwards,
        so that nothing leaks into the next request on the shared connection."""
        applied: list[str] = []
        try:
            if database:
                self._run(f"USE `{database}`")
            for name, value in settings.items():
                if not _SETTING_NAME.fullmatch(name):
                    raise ClickHouseError.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
                self._run(f"SET {name} = {_quote(value)}")
                applied.append(name)
            yield
        finally:
            for name in applied:
                self._connection.query(f"SET {name} = DEFAULT")
            if database:
                self._connection.query("USE default")

    def _run(self, sql: str) -> None:
        try:
            self._connection.query(sql)
        except Exception as error:
            raise ClickHouseError.from_engine(error) from None


def _summary(result: Any, elapsed_s: float) -> dict[str, str]:
    def metric(name: str) -> int:
        value = getattr(result, name, 0)
        return int(value() if callable(value) else value or 0)

    read_rows, read_bytes = metric("rows_read"), metric("bytes_read")
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(metric("rows_written")),
        "written_bytes": str(metric("bytes_written")),
        "total_rows_to_read": str(read_rows),
        "result_rows": str(read_rows),
        "result_bytes": str(read_bytes),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }


@dataclass(frozen=True)
class Credentials:
    user: str = "default"
    password: str = ""


class ClickHouseHttpService:
    """ClickHouse's HTTP semantics over an Engine, independent of the socket layer."""

    def __init__(self, engine: Engine, credentials: Credentials) -> None:
        self.engine = engine
        self._credentials = credentials
        self._sessions: dict[str, Session] = {}
        self._sessions_lock = threading.Lock()

    def authenticate(self, user: str, password: str) -> None:
        if (user or "default", password) != (self._credentials.user, self._credentials.password):
            raise ClickHouseError.of(
                516,
                "AUTHENTICATION_FAILED",
                f"{user or 'default'}: Authentication failed: password is incorrect, "
                "or there is no user with such name",
            )

    def session(self, params: dict[str, str]) -> Session | None:
        session_id = params.get("session_id")
        if not session_id:
            return None
        now = time.monotonic()
        timeout = float(params.get("session_timeout") or DEFAULT_SESSION_TIMEOUT_S)
        with self._sessions_lock:
            for expired in [key for key, s in self._sessions.items() if s.expires_at < now]:
                del self._sessions[expired]
            session = self._sessions.get(session_id)
            if session is None:
                if params.get("session_check") == "1":
                    raise ClickHouseError.of(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                session = self._sessions[session_id] = Session()
            session.expires_at = now + timeout
            return session

    def handle(self, method: str, params: dict[str, str], body: bytes) -> tuple[Outcome, str]:
        """Run one request; returns the outcome and the output format used."""
        for unsupported in ("compress", "decompress"):
            if params.get(unsupported) == "1":
                raise not_implemented(f"ClickHouse native block compression ({unsupported}=1)")
        session = self.session(params)
        statement = Statement.parse(params.get("query", ""), body)
        if not statement.sql:
            raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query")
        if method == "GET" and not statement.is_read_only:
            raise ClickHouseError.of(
                164,
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies "
                "readonly. You should use method POST for modifying queries",
            )
        settings = {**(session.settings if session else {}), **_request_settings(params)}
        database = params.get("database") or (session.database if session else None)
        output_format = statement.output_format(params.get("default_format") or DEFAULT_OUTPUT_FORMAT)
        assignments = statement.assignments()
        used_database = statement.used_database()
        if assignments is not None or used_database is not None:
            # SET and USE change the session, not the shared connection: check them in a scope, then keep them.
            outcome = self.engine.execute(
                Statement("SELECT 1"),
                output_format=output_format,
                settings={**settings, **(assignments or {})},
                database=used_database or database,
                query_parameters={},
            )
            if session is not None:
                session.settings.update(assignments or {})
                session.database = used_database or session.database
            return Outcome(b"", outcome.summary), output_format
        query_parameters = {k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")}
        outcome = self.engine.execute(
            statement,
            output_format=output_format,
            settings=settings,
            database=database,
            query_parameters=query_parameters,
        )
        return outcome, output_format


def _request_settings(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in HTTP_PARAMETERS and not k.startswith("param_")}


_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
}


def content_type(output_format: str) -> str:
    if output_format in _CONTENT_TYPES:
        return _CONTENT_TYPES[output_format]
    if output_format.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if output_format.startswith(("TabSeparated", "TSV", "Pretty", "Vertical", "Markdown", "Values")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


class ClickHouseRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ClickHouse"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK hold the body back ~40 ms on every keep-alive request.
    disable_nagle_algorithm = True
    service: ClickHouseHttpService  # set on the subclass that serve() creates

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            body = self._read_body()
            if url.path in ("/ping", "/replicas_status") or (url.path == "/" and not params.get("query") and not body):
                self._reply(HTTPStatus.OK, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if url.path != "/":
                message = f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n"
                self._reply(HTTPStatus.NOT_FOUND, message.encode(), {"Content-Type": "text/plain; charset=UTF-8"})
                return
            body, params = self._form_fields(body, params)
            self.service.authenticate(*self._credentials(params))
            outcome, output_format = self.service.handle(method, params, body)
        except ClickHouseError as error:
            self._reply_error(error, query_id)
            return
        headers = {
            "Content-Type": content_type(output_format),
            "X-ClickHouse-Format": output_format,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.service.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":")),
        }
        self._reply(HTTPStatus.OK, self._encode(outcome.body, params, headers), headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if not encoding or encoding == "identity":
            return body
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise not_implemented(f"Content-Encoding {encoding!r}")
        try:
            return decoder(body)
        except Exception as error:
            raise ClickHouseError.of(
                432, "UNKNOWN_CODEC", f"Cannot decompress the request body as {encoding}: {error}"
            ) from None

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _form_fields(self, body: bytes, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """Multipart bodies carry the query and its parameters as form fields."""
        content = self.headers.get("Content-Type", "")
        if not content.startswith("multipart/form-data"):
            return body, params
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content}\r\n\r\n".encode() + body
        )
        fields = dict(params)
        for part in message.iter_parts():
            if part.get_filename():
                raise not_implemented("External data (multipart file fields)")
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = payload.decode() if isinstance(payload, bytes) else str(payload)
        return b"", fields

    def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            return user, password
        user = self.headers.get("X-ClickHouse-User") or params.get("user", "")
        return user, self.headers.get("X-ClickHouse-Key") or params.get("password", "")

    def _encode(self, body: bytes, params: dict[str, str], headers: dict[str, str]) -> bytes:
        if params.get("enable_http_compression") != "1":
            return body
        accepted = [item.split(";")[0].strip().lower() for item in self.headers.get("Accept-Encoding", "").split(",")]
        encoding = next((name for name in accepted if name in _ENCODERS), None)
        if encoding is None:
            return body
        headers["Content-Encoding"] = encoding
        return _ENCODERS[encoding](body)

    def _reply_error(self, error: ClickHouseError, query_id: str) -> None:
        body = f"{error.message} (version {self.service.engine.version})\n".encode()
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Exception-Code": str(error.code),
        }
        self._reply(error.http_status, body, headers)

    def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-ClickHouse-Server-Display-Name", SERVER_DISPLAY_NAME)
        self.send_header("Keep-Alive", "timeout=10")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(data_dir: str, host: str, port: int, credentials: Credentials) -> ThreadingHTTPServer:
    service = ClickHouseHttpService(Engine(data_dir), credentials)
    handler = type("BoundHandler", (ClickHouseRequestHandler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="chDB data directory (owned by this process)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = make_server(args.data_dir, args.host, args.port, Credentials(args.user, args.password))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("ClickHouse HTTP interface (chDB %s) on http://%s:%d", chdb.__version__, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.RequestHandlerClass.service.engine.close()  # type: ignore[attr-defined]
        log.info("stopped")


if __name__ == "__main__":
    main()
