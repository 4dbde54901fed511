"""A tiny OpenAI-compatible fake engine, for tests and the router benchmark.

It speaks the small subset of vLLM's OpenAI server that the testbed uses
(``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` streaming or not,
and the dev-mode sleep endpoints ``/sleep``, ``/wake_up``, ``/is_sleeping``) and
produces tokens on a simple latency model, so routing, replay and fault
handling can be tested in a second without vLLM. It is *not* a model of a real
engine's timing: nothing measured comes from it.

Fault switches (for the fault tests): ``--startup-s`` delays listening (an
engine still starting), ``--never-healthy`` answers 503 on ``/health``
forever, ``--die-after N`` exits the process abruptly (``os._exit``) while
streaming its N-th request.

Run: ``python -m warmserve.testbed.stub_engine --port 8100 --model m0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from aiohttp import web


def _chunk(model: str, rid: str, text: str, finish: str | None) -> bytes:
    body = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "token_ids": [7], "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def build_app(args: argparse.Namespace) -> web.Application:
    state = {"served": 0, "sleeping": 0, "weights": True, "kv": True}
    served_names = set(args.model)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=503 if args.never_healthy else 200)

    async def models(_: web.Request) -> web.Response:
        data = [{"id": m, "object": "model"} for m in args.model]
        return web.json_response({"object": "list", "data": data})

    async def sleep(req: web.Request) -> web.Response:
        state["sleeping"] = int(req.query.get("level", "1"))
        state["weights"] = state["kv"] = False
        return web.Response(status=200)

    async def wake_up(req: web.Request) -> web.Response:
        tags = req.query.getall("tags", ["weights", "kv_cache"])
        state["weights"] |= "weights" in tags
        state["kv"] |= "kv_cache" in tags
        if state["weights"] and state["kv"]:
            state["sleeping"] = 0
        return web.Response(status=200)

    async def is_sleeping(_: web.Request) -> web.Response:
        return web.json_response({"is_sleeping": bool(state["sleeping"]), **state})

    async def completions(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        model = body.get("model")
        if model not in served_names:
            return web.json_response({"error": f"model {model!r} not served"}, status=404)
        if state["sleeping"]:
            return web.json_response({"error": "engine is sleeping"}, status=503)
        prompt = body.get("prompt", [])
        n_in = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        n_out = int(body.get("max_tokens", 16))
        state["served"] += 1
        this = state["served"]
        rid = f"cmpl-{this}"
        await asyncio.sleep((args.prefill_ms_per_token * n_in + args.prefill_ms_base) / 1000)
        if not body.get("stream"):
            await asyncio.sleep(args.decode_ms * max(0, n_out - 1) / 1000)
            usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
            return web.json_response(
                {"id": rid, "model": model, "choices": [{"index": 0, "text": "x" * n_out}], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        for i in range(n_out):
            if args.die_after and this >= args.die_after and i >= 1:
                os._exit(17)  # an engine crash mid-stream, as abrupt as a real one
            if i:
                await asyncio.sleep(args.decode_ms / 1000)
            await resp.write(_chunk(model, rid, "x", "length" if i == n_out - 1 else None))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
            tail = {"id": rid, "object": "text_completion", "model": model, "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(tail)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/sleep", sleep)
    app.router.add_post("/wake_up", wake_up)
    app.router.add_get("/is_sleeping", is_sleeping)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", action="append", required=True, help="served model name (repeatable)")
    p.add_argument("--startup-s", type=float, default=0.0)
    p.add_argument("--prefill-ms-base", type=float, default=0.0)
    p.add_argument("--prefill-ms-per-token", type=float, default=0.0)
    p.add_argument("--decode-ms", type=float, default=0.0)
    p.add_argument("--never-healthy", action="store_true")
    p.add_argument("--die-after", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.startup_s > 0:
        time.sleep(args.startup_s)
    web.run_app(build_app(args), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
