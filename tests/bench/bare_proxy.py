"""The bare reference proxy of tests/bench/bench.py: what criteo-proxy is measured against.

    python tests/bench/bare_proxy.py --port 8081 --upstream http://127.0.0.1:8080

One shared pooled keep-alive ClientSession, a fixed bearer token, the response
streamed in 256 KiB reads, uvloop when importable, no access log. Nothing else.
"""

import argparse
import asyncio

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict

DROP = {"connection", "keep-alive", "transfer-encoding"}  # hop-by-hop, aiohttp sets its own


async def forward(request: web.Request) -> web.StreamResponse:
    headers = CIMultiDict(request.headers)
    headers.popall("Host", None)
    headers["Authorization"] = "Bearer bench"
    body = request.content if request.body_exists else None
    url = request.app["upstream"] + request.raw_path
    async with request.app["session"].request(
        request.method, url, headers=headers, data=body, allow_redirects=False
    ) as upstream:
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in DROP}
        response = web.StreamResponse(status=upstream.status, headers=kept)
        await response.prepare(request)
        while chunk := await upstream.content.read(256 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    connector = TCPConnector(limit=100, keepalive_timeout=60)
    timeout = ClientTimeout(total=None, sock_read=300)
    async with ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as s:
        app["session"] = s
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description="bare reference aiohttp proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8080")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    app = web.Application()
    app["upstream"] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
