"""Drives `nanolab serve` with the official openai client (run by tests/serve.rs).

Usage: openai_client.py BASE_URL BASE_MODEL ADAPTER_NAME API_KEY
Every check raises on failure; the last line printed is "all checks passed".
"""
import sys

import openai

base_url, model, adapter, key = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)

# Models: the base by file stem and BASE+ADAPTER for the adapters that fit.
ids = [m.id for m in client.models.list().data]
assert model in ids, ids
assert f"{model}+{adapter}" in ids, ids

messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name three colours."},
]

# Chat, whole and streamed, greedy: the stream's pieces join to the whole answer.
whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=24)
text = whole.choices[0].message.content
assert whole.choices[0].finish_reason in ("stop", "length"), whole.choices[0].finish_reason
assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0, whole.usage
assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
assert text, "empty answer"
pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=24, stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(pieces) == text, ("".join(pieces), text)
assert len(pieces) > 1, "the answer came in one piece, not streamed"
assert finish == whole.choices[0].finish_reason, finish
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage
print("chat whole and streamed agree:", repr(text))

# A stack by model name changes the answer; the same stack through llama-server's lora field
# gives the same answer as by name.
with_adapter = client.chat.completions.create(
    model=f"{model}+{adapter}", messages=messages, temperature=0, max_tokens=24
).choices[0].message.content
assert with_adapter != text, "the adapter changed nothing"
import json
import urllib.request

req = urllib.request.Request(base_url.removesuffix("/v1") + "/lora-adapters", headers={"Authorization": f"Bearer {key}"})
loras = json.load(urllib.request.urlopen(req))
ids_by_name = {a["name"]: a["id"] for a in loras}
by_field = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=24,
    extra_body={"lora": [{"id": ids_by_name[adapter], "scale": 1.0}]},
).choices[0].message.content
assert by_field == with_adapter, (by_field, with_adapter)
print("adapter by name and by lora field agree:", repr(with_adapter))

# Log probabilities: one entry per generated token, alternatives sorted, the chosen one's
# logprob no greater than the best alternative's.
lp = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
)
content = lp.choices[0].logprobs.content
assert len(content) == lp.usage.completion_tokens, (len(content), lp.usage)
for e in content:
    assert len(e.top_logprobs) == 3
    tops = [t.logprob for t in e.top_logprobs]
    assert tops == sorted(tops, reverse=True), tops
    assert e.logprob <= tops[0] + 1e-9 and e.logprob <= 0.0
    # Greedy: the chosen token is the most likely one.
    assert e.token == e.top_logprobs[0].token, (e.token, e.top_logprobs[0].token)

# Text completions with stop strings and logprobs.
comp = client.completions.create(model=model, prompt="1, 2, 3, 4,", temperature=0, max_tokens=30, stop=[" 8"], logprobs=2)
assert " 8" not in comp.choices[0].text, comp.choices[0].text
assert comp.choices[0].finish_reason == "stop", comp.choices[0].finish_reason
assert len(comp.choices[0].logprobs.tokens) == len(comp.choices[0].logprobs.token_logprobs)
print("completion with stop:", repr(comp.choices[0].text))

# Errors come back as the client's typed exceptions with OpenAI's error object.
def expect(exc, status, **kw):
    try:
        client.chat.completions.create(**kw)
    except exc as e:
        assert e.status_code == status, (e.status_code, status)
        assert e.body and "message" in e.body, e.body
        return e
    raise AssertionError(f"no {exc.__name__} for {kw}")

expect(openai.NotFoundError, 404, model="no-such-model", messages=messages)
expect(openai.NotFoundError, 404, model=f"{model}+no-such-adapter", messages=messages)
e = expect(openai.BadRequestError, 400, model=f"{model}+../../etc/passwd", messages=messages)
assert "no paths" in e.body["message"], e.body
expect(openai.BadRequestError, 400, model=model, messages=messages, max_tokens=0)
expect(openai.BadRequestError, 400, model=model, messages=messages, max_tokens=10**7)
expect(openai.BadRequestError, 400, model=model, messages=[])
bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401
print("all checks passed")
