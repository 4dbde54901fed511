"""A tiny OpenAI-compatible fake engine, for tests and the router benchmark.

It speaks the small subset of vLLM's OpenAI server that the testbed uses
(``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` streaming or not,
and the dev-mode sleep endpoints ``/sleep``, ``/wake_up``, ``/is_sleeping``) and
produces tokens on a simple latency model, so routing, replay and fault
handling can be tested in a second without vLLM. It is *not* a model of a real
engine's timing: nothing measured comes from it.

On a fake GPU node (``WARMSERVE_FAKE_GPU`` in its environment, see ``warmserve.testbed.fake_gpu``)
it also follows vLLM's memory, tensor-parallel, KV-cache and sleep-mode rules
(``warmserve.testbed.stub_gpu``), with ``/collective_rpc`` (``reload_weights``) and
``/stub/state`` (its device state, for tests).

Fault switches (for the fault tests): ``--startup-s`` delays listening (an
engine still starting), ``--never-healthy`` answers 503 on ``/health``
forever, ``--exit-delay-s`` lingers after SIGTERM (holding its memory), ``--die-after N`` exits the
process abruptly (``os._exit``) while streaming its N-th request.

Run: ``python -m warmserve.testbed.stub_engine --port 8100 --model m0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from aiohttp import web

from warmserve.testbed import stub_gpu
from warmserve.testbed.stub_gpu import EngineStartError, StubGpu


def _chunk(model: str, rid: str, text: str, finish: str | None) -> bytes:
    body = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "token_ids": [7], "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def build_app(args: argparse.Namespace, gpu: StubGpu | None = None) -> web.Application:
    state = {"served": 0, "sleeping": 0, "weights": True, "kv": True}
    served_names = set(args.model)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=503 if args.never_healthy else 200)

    async def models(_: web.Request) -> web.Response:
        data = [{"id": m, "object": "model"} for m in args.model]
        return web.json_response({"object": "list", "data": data})

    async def sleep(req: web.Request) -> web.Response:
        if gpu is not None:
            err = gpu.sleep(int(req.query.get("level", "1")))
            return web.json_response({"error": err}, status=500) if err else web.Response(status=200)
        state["sleeping"] = int(req.query.get("level", "1"))
        state["weights"] = state["kv"] = False
        return web.Response(status=200)

    async def wake_up(req: web.Request) -> web.Response:
        tags = req.query.getall("tags", ["weights", "kv_cache"])
        if gpu is not None:
            err = gpu.wake_up(tags)
            return web.json_response({"error": err}, status=500) if err else web.Response(status=200)
        state["weights"] |= "weights" in tags
        state["kv"] |= "kv_cache" in tags
        if state["weights"] and state["kv"]:
            state["sleeping"] = 0
        return web.Response(status=200)

    async def is_sleeping(_: web.Request) -> web.Response:
        if gpu is not None:
            return web.json_response({"is_sleeping": gpu.sleeping})
        return web.json_response({"is_sleeping": bool(state["sleeping"]), **state})

    async def collective_rpc(req: web.Request) -> web.Response:
        body = await req.json()
        if gpu is None:
            return web.json_response({"error": "collective_rpc needs a (fake) GPU"}, status=500)
        err = gpu.collective_rpc(str(body.get("method")))
        return web.json_response({"error": err}, status=500) if err else web.json_response({"results": [None]})

    async def stub_state(_: web.Request) -> web.Response:
        return web.json_response({"served": state["served"], **(gpu.state() if gpu is not None else {})})

    async def completions(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        model = body.get("model")
        if model not in served_names:
            return web.json_response({"error": f"model {model!r} not served"}, status=404)
        if state["sleeping"] or (gpu is not None and gpu.sleeping):
            return web.json_response({"error": "engine is sleeping"}, status=503)
        prompt = body.get("prompt", [])
        n_in = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        n_out = int(body.get("max_tokens", 16))
        if gpu is None:
            return await _serve(req, body, model, n_in, n_out, "x")
        err = await gpu.acquire_kv(n_in + n_out)
        if err:
            return web.json_response({"error": err}, status=400)
        try:
            text = "x" if gpu.weights_valid else "?"  # garbage weights give garbage tokens
            if not gpu.weights_valid:
                gpu.garbage_served += 1
                print(f"GARBAGE: request {body.get('request_id', '?')} served with discarded weights "
                      "(level-2 sleep, woken without reload_weights)", file=sys.stderr, flush=True)
            return await _serve(req, body, model, n_in, n_out, text)
        finally:
            await gpu.release_kv(n_in + n_out)

    async def _serve(req: web.Request, body: dict, model: str, n_in: int, n_out: int,
                     text: str) -> web.StreamResponse:
        state["served"] += 1
        this = state["served"]
        rid = f"cmpl-{this}"
        await asyncio.sleep((args.prefill_ms_per_token * n_in + args.prefill_ms_base) / 1000)
        if not body.get("stream"):
            await asyncio.sleep(args.decode_ms * max(0, n_out - 1) / 1000)
            usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
            return web.json_response(
                {"id": rid, "model": model, "choices": [{"index": 0, "text": text * n_out}], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        for i in range(n_out):
            if args.die_after and this >= args.die_after and i >= 1:
                os._exit(17)  # an engine crash mid-stream, as abrupt as a real one
            if i:
                await asyncio.sleep(args.decode_ms / 1000)
            await resp.write(_chunk(model, rid, text, "length" if i == n_out - 1 else None))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
            tail = {"id": rid, "object": "text_completion", "model": model, "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(tail)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def slow_exit(_: web.Application) -> None:
        await asyncio.sleep(args.exit_delay_s)  # a real engine takes a while to shut down and free its memory

    app = web.Application()
    if args.exit_delay_s > 0:
        app.on_shutdown.append(slow_exit)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/sleep", sleep)
    app.router.add_post("/wake_up", wake_up)
    app.router.add_get("/is_sleeping", is_sleeping)
    app.router.add_post("/collective_rpc", collective_rpc)
    app.router.add_get("/stub/state", stub_state)
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
    p.add_argument("--exit-delay-s", type=float, default=0.0, help="linger this long after SIGTERM before exiting")
    stub_gpu.add_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        gpu = stub_gpu.from_env(args)
        if gpu is not None:
            gpu.start()  # vLLM checks and allocates device memory early in its start
    except EngineStartError as exc:
        print(f"ValueError: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.startup_s > 0:
        time.sleep(args.startup_s)
    web.run_app(build_app(args, gpu), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
