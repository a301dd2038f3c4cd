"""Load generator for benches/serve-load.sh: N chat requests from C concurrent clients (the
official openai client) against one OpenAI-compatible server; prints one JSON line of results.

Usage: serve_load.py BASE_URL MODEL REQUESTS CONCURRENCY MAX_TOKENS
"""
import concurrent.futures as cf
import json
import statistics
import sys
import time

import openai

base_url, model, n, conc, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
topics = ["rivers", "bridges", "owls", "glass", "tides", "maps", "bees", "clocks"]


def one(i):
    t0 = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Write a few sentences about {topics[i % len(topics)]}."}],
        temperature=0, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True},
        # llama-server: no prompt cache, so neither server reuses KV across requests.
        extra_body={"cache_prompt": False},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return time.perf_counter() - t0, first or 0.0, tokens


t0 = time.perf_counter()
ok, errors = [], []
with cf.ThreadPoolExecutor(conc) as pool:
    for f in cf.as_completed([pool.submit(one, i) for i in range(n)]):
        try:
            ok.append(f.result())
        except Exception as e:  # every failure is counted and reported, none dropped
            errors.append(repr(e)[:200])
wall = time.perf_counter() - t0
lat = sorted(r[0] for r in ok)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))] if v else 0.0
print(json.dumps({
    "requests": n, "answered": len(ok), "errors": len(errors), "first_errors": errors[:3],
    "wall_s": wall, "completion_tokens": sum(r[2] for r in ok),
    "aggregate_tokens_per_sec": sum(r[2] for r in ok) / wall,
    "latency_p50_s": q(lat, 0.50), "latency_p95_s": q(lat, 0.95),
    "ttft_p50_s": q(sorted(r[1] for r in ok), 0.50),
}))
