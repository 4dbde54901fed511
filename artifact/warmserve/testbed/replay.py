"""The open-loop replay client and the request log it becomes.

Each workload row is sent at its ``arrival_s`` (open loop: a slow answer never
delays the next send) to the front door as ``POST /v1/completions`` with a
token-id prompt of exactly ``input_tokens`` ids, ``max_tokens =
output_tokens``, ``ignore_eos`` (so every request produces exactly its output
length, as in the published client) and ``stream``. TTFT and TPOT are
measured here, at the client: TTFT = first streamed token - send time.

Prompt ids are random per request (seeded), not a repeated filler token, so
vLLM's prefix cache cannot turn later prompts into cache hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass

import aiohttp
import numpy as np
import pandas as pd

from warmserve.testbed.frontdoor import DoorRecord


@dataclass(slots=True)
class ClientRecord:
    request_id: int
    send_mono: float | None = None
    first_token_mono: float | None = None
    finish_mono: float | None = None
    tokens: int = 0
    usage_tokens: int | None = None
    status: str = ""
    error: str = ""


def prompt_ids(request_id: int, n: int, vocab: int, seed: int) -> list[int]:
    """``n`` token ids in ``[3, vocab)`` (0-2 are special in Llama vocabularies), seeded per request."""
    rng = np.random.default_rng((seed, request_id))
    return rng.integers(3, vocab, size=max(1, n)).tolist()


async def send_one(session: aiohttp.ClientSession, url: str, row: dict, vocab: int, seed: int,
                   rec: ClientRecord) -> None:
    body = {
        "model": row["model"],
        "prompt": prompt_ids(int(row["request_id"]), int(row["input_tokens"]), vocab, seed),
        "max_tokens": int(row["output_tokens"]),
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    rec.send_mono = time.monotonic()
    try:
        async with session.post(f"{url}/v1/completions", json=body,
                                headers={"X-Request-Id": str(int(row["request_id"]))}) as r:
            if r.status != 200:
                rec.status = "timeout" if r.status == 504 else "failed"
                rec.error = f"HTTP {r.status}: {(await r.text())[:200]}"
                return
            buf = b""
            async for chunk in r.content.iter_any():
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    _consume(event, rec)
            if buf.strip():
                _consume(buf, rec)
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
        return
    rec.finish_mono = time.monotonic()
    if not rec.status:
        rec.status = "ok" if rec.tokens > 0 else "failed"


def _consume(event: bytes, rec: ClientRecord) -> None:
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        msg = json.loads(data)
        if "error" in msg:
            rec.status, rec.error = "failed", str(msg["error"])[:300]
            continue
        if msg.get("usage"):
            rec.usage_tokens = int(msg["usage"].get("completion_tokens") or 0)
        for choice in msg.get("choices") or []:
            ids = choice.get("token_ids")
            n = len(ids) if ids else 1  # vLLM streams one token per chunk (text is "" without a tokenizer)
            if n and rec.first_token_mono is None:
                rec.first_token_mono = time.monotonic()
            rec.tokens += n


async def replay_open_loop(url: str, workload: pd.DataFrame, t0_mono: float, vocab: int, seed: int,
                           records: dict[int, ClientRecord], stop: asyncio.Event,
                           progress=None) -> None:
    """Send every row at ``t0_mono + arrival_s``; returns when all answered or ``stop`` is set."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: list[asyncio.Task] = []
        for row in workload.to_dict("records"):
            rid = int(row["request_id"])
            records[rid] = ClientRecord(rid)
            delay = t0_mono + float(row["arrival_s"]) - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            tasks.append(asyncio.create_task(send_one(session, url, row, vocab, seed, records[rid])))
            if progress is not None:
                progress(float(row["arrival_s"]))
        if tasks:
            waiter = asyncio.ensure_future(asyncio.wait(tasks))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def request_log(workload: pd.DataFrame, client: dict[int, ClientRecord], door: dict[int, DoorRecord],
                t0_mono: float) -> pd.DataFrame:
    """Merge client and front-door records into request-log rows (docs/design.md §4) (one per workload row).

    The TTFT split: ``queue_s`` = send to routing decision (front-door wait, HTTP
    hop included); ``init_s`` = decision to the instance being ready (the whole
    engine start on the CPU, where load and initialisation cannot be separated
    from outside the process, so ``load_s`` is 0); ``prefill_s`` = the rest
    (engine queueing, prefill, the relay). They add up to ``ttft_s`` exactly.
    """
    nan = math.nan
    rows = []
    for w in workload.to_dict("records"):
        rid = int(w["request_id"])
        c = client.get(rid) or ClientRecord(rid)
        d = door.get(rid)
        status = c.status or "timeout"  # never sent or never answered before the end
        if c.send_mono is None:
            status = "timeout"
        t = lambda m: nan if m is None else m - t0_mono  # noqa: E731
        ttft = (c.first_token_mono - c.send_mono) if (c.first_token_mono and c.send_mono) else nan
        queue = load = init = prefill = nan
        if not math.isnan(ttft) and d is not None and d.dispatch_mono is not None and c.send_mono is not None:
            queue = max(0.0, d.dispatch_mono - c.send_mono)
            init = max(0.0, (d.ready_mono or d.dispatch_mono) - d.dispatch_mono)
            queue, init = min(queue, ttft), min(init, max(0.0, ttft - queue))
            load = 0.0
            prefill = ttft - queue - init
        out_tokens = int(w["output_tokens"])
        finish = t(c.finish_mono) if status == "ok" else nan
        first = t(c.first_token_mono)
        tpot = (finish - first) / (out_tokens - 1) if (status == "ok" and out_tokens > 1) else nan
        rows.append({
            "request_id": rid, "arrival_s": float(w["arrival_s"]), "model": w["model"],
            "input_tokens": int(w["input_tokens"]), "output_tokens": out_tokens,
            "instance_id": d.instance_id if d else -1,
            "gpus": ",".join(map(str, d.gpus)) if d and d.gpus else "",
            "first_token_s": first, "finish_s": finish,
            "ttft_s": queue + load + init + prefill if not math.isnan(queue) else ttft,
            "tpot_s": tpot, "status": status, "start_kind": d.start_kind if d else "",
            "queue_s": queue, "load_s": load, "init_s": init, "prefill_s": prefill,
            # testbed-only columns (kept in the testbed's own side file)
            "mechanism": d.mechanism if d else "", "attempts": d.attempts if d else 0,
            "tokens_received": c.tokens, "error": c.error or (d.error if d else ""),
            "send_lag_s": (c.send_mono - t0_mono - float(w["arrival_s"])) if c.send_mono else nan,
        })
    return pd.DataFrame(rows)
