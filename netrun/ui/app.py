"""The web app of `netrun ui`: a page and a JSON API over one net's database file (Starlette).

Read routes only, unless the app is made with `allow_writes=True`: then two more, which replay or
discard dead letters through `netrun.repairs` (the owner lock and the library calls of `netrun dlq`).
Each write must carry the token made for this start (header `X-Netrun-Token`, compared in constant
time) in a JSON request: a page of another site can neither read the token nor send such a request
without a CORS preflight, which this app never answers.

Every response forbids framing and scripts from elsewhere (Content-Security-Policy); a request
whose Host is a name other than localhost or the host served is refused, so a DNS name pointed at
this machine (DNS rebinding) cannot read the page and its token.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError, NetInUse, NetrunError, NotFoundError, QueryError
from ..dialect import is_url
from ..inspector import NetInspector
from ..pgconn import redact
from ..readonly import Readers, guarded_query
from ..repairs import resolve_dead_letters
from ..tabular import write_rows
from . import queries

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSV_SECONDS = 120.0  # a CSV download's query is stopped after this long
MAX_SELECTED = 10_000  # dead letters one write may name
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Inspectors(Readers):
    """One read-only `NetInspector` per thread that answers requests; all closed when the app stops."""

    def _open(self) -> NetInspector:
        return NetInspector(self.path)


def host_allowed(host_header: str, served_host: str) -> bool:
    """Whether a request's Host names this server: an IP address, localhost, or the host served."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    if name in ("localhost", served_host.lower().strip("[]")):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """ASGI middleware: refuse a foreign Host (and a cross-origin write), add the safety headers."""

    def __init__(self, app: ASGIApp, served_host: str) -> None:
        self.app = app
        self.served_host = served_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not host_allowed(host, self.served_host):
            await _plain(403, f"netrun ui does not answer for host {host!r}: open it by its address")(
                scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None and origin != f"http://{host}":
            await _plain(403, "cross-origin request refused")(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                for key, value in HEADERS.items():
                    if key.lower().encode() not in present:
                        message["headers"].append((key.lower().encode(), value.encode()))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def _error(exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, NetInUse) else \
        400 if isinstance(exc, (ConfigError, QueryError)) else 500
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status)


def _int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def create_app(path: str, *, allow_writes: bool = False, token: str | None = None,
               served_host: str = "127.0.0.1") -> Starlette:
    """The app serving the net in `path` (checked readable by the caller: see `server.serve`).

    `allow_writes`: add the dead-letter write routes, which need `token` (made here when None)."""
    inspectors = Inspectors(path)
    label = redact(path) if is_url(path) else path  # a URL's password is never shown
    short = label if is_url(path) else os.path.basename(path)
    token = token or secrets.token_urlsafe(32)
    write_lock = asyncio.Lock()
    static = {name: (resources.files(__package__) / "static" / name).read_bytes() for name in STATIC}
    page = (resources.files(__package__) / "static" / "index.html").read_text(encoding="utf-8")
    meta = f'<meta name="netrun-writes" content="{"yes" if allow_writes else "no"}">'
    if allow_writes:
        meta += f'\n<meta name="netrun-token" content="{html.escape(token)}">'
    page = page.replace("<!--META-->", meta).replace(
        "<!--FILE-->", f'<span title="{html.escape(label)}">{html.escape(short)}</span>')

    def read(answer: Callable[..., dict]) -> Callable[[Request], Response]:
        """A GET route: `answer(inspector, request)` in a worker thread, errors as JSON."""
        def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(answer(inspectors.get(), request))
            except (NetrunError, OSError) as exc:
                return _error(exc)
        return endpoint

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _plain(404, "not found")
        return Response(static[name], media_type=STATIC[name])

    def sql_csv(request: Request) -> Response:
        statement = request.query_params.get("q", "")
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="utf-8", newline="")
        try:
            with guarded_query(inspectors.get()._conn, statement, seconds=CSV_SECONDS) as (columns, rows):
                write_rows(spool, columns, rows, "csv")
        except (NetrunError, OSError) as exc:
            spool.close()
            return _error(exc)
        spool.seek(0)

        def chunks() -> Any:
            with spool:
                while block := spool.read(1 << 16):
                    yield block

        return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="query.csv"'})

    routes = [
        Route("/", index),
        Route("/static/{name}", asset),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/overview", read(lambda net, r: queries.overview(net))),
        Route("/api/live", read(lambda net, r: queries.live(net))),
        Route("/api/epochs", read(lambda net, r: queries.epochs_page(
            net, node=_text(r, "node"), state=_text(r, "state"), since=_text(r, "since"), until=_text(r, "until"),
            before=_text(r, "before"), limit=_int(r, "limit")))),
        Route("/api/epoch/{id}", read(lambda net, r: queries.epoch_detail(net, r.path_params["id"]))),
        Route("/api/packet/{id}", read(lambda net, r: queries.packet_detail(
            net, r.path_params["id"], depth=_int(r, "depth") or 10))),
        Route("/api/history", read(lambda net, r: queries.history_page(
            net, node=_text(r, "node"), epoch=_text(r, "epoch"), packet=_text(r, "packet"), kind=_text(r, "kind"),
            since=_text(r, "since"), before=_int(r, "before"), limit=_int(r, "limit")))),
        Route("/api/logs", read(lambda net, r: queries.logs_page(
            net, node=_text(r, "node"), epoch=_text(r, "epoch"), before=_int(r, "before"), limit=_int(r, "limit")))),
        Route("/api/dlq", read(lambda net, r: queries.dead_letters_page(
            net, node=_text(r, "node"), include_resolved=r.query_params.get("all") == "1", after=_int(r, "after"),
            limit=_int(r, "limit")))),
        Route("/api/dlq/{seq:int}", read(lambda net, r: queries.dead_letter_detail(net, r.path_params["seq"]))),
        Route("/api/sql", read(lambda net, r: queries.sql_rows(net, r.query_params.get("q", "")))),
        Route("/api/sql.csv", sql_csv),
        Route("/api/find", read(lambda net, r: queries.find(net, r.query_params.get("id", ""), _text(r, "kind")))),
    ]

    if allow_writes:
        async def resolve(request: Request, *, replay: bool) -> Response:
            if not secrets.compare_digest(request.headers.get("x-netrun-token", "").encode(), token.encode()):
                return JSONResponse({"error": "forbidden", "message": "this write needs the page's token"},
                                    status_code=403)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"error": "unsupported", "message": "send JSON"}, status_code=415)
            try:
                body = json.loads(await request.body())
                seqs = body["seqs"]
                if (not isinstance(seqs, list) or not seqs or len(seqs) > MAX_SELECTED
                        or not all(type(s) is int and s > 0 for s in seqs)):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "usage", "message": 'send {"seqs": [dead letter numbers]}'},
                                    status_code=400)
            async with write_lock:  # one repair at a time from this page
                try:
                    result = await run_in_threadpool(resolve_dead_letters, path, seqs, replay=replay)
                except (NetrunError, OSError) as exc:
                    return _error(exc)
            return JSONResponse({"done": result.done, "interrupted": result.interrupted})

        async def replay(request: Request) -> Response:
            return await resolve(request, replay=True)

        async def discard(request: Request) -> Response:
            return await resolve(request, replay=False)

        routes += [Route("/api/dlq/replay", replay, methods=["POST"]),
                   Route("/api/dlq/discard", discard, methods=["POST"])]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        inspectors.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(Guard, served_host=served_host)
    return app
