"""Compatibility check: the official OpenAI Python SDK talking to Warden.

Run by the Rust test `compat::official_python_sdk_works_against_warden`, which starts a mock
upstream and Warden and passes their addresses and keys in the environment.
"""

import os
import sys

import openai
from openai import OpenAI

base_url = os.environ["WARDEN_URL"] + "/v1"
key = os.environ["WARDEN_KEY"]
limited_key = os.environ["WARDEN_LIMITED_KEY"]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name}: {detail}", file=sys.stderr)
        sys.exit(1)
    checks += 1
    print(f"ok   {name}")


# Chat, non-streaming.
r = client.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "hello sdk"}]
)
check("chat content", r.choices[0].message.content == "echo: hello sdk", r)
check("chat usage", r.usage is not None and r.usage.prompt_tokens == 10, r.usage)

# Raw response headers are visible through the SDK.
raw = client.chat.completions.with_raw_response.create(
    model="fast", messages=[{"role": "user", "content": "hi"}]
)
check("deployment header", raw.headers.get("x-warden-deployment") == "compat-1", raw.headers)
check("request id header", raw.headers.get("x-request-id", "").startswith("req_"), raw.headers)

# Streaming, with the usage chunk requested.
stream = client.chat.completions.create(
    model="fast",
    messages=[{"role": "user", "content": "stream me please"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage = "", None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
check("stream text", text == "echo: stream me please", text)
check("stream usage", usage is not None and usage.prompt_tokens == 10, usage)

# Tool calls, non-streaming and streaming.
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}]
r = client.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "weather?"}], tools=tools
)
call = r.choices[0].message.tool_calls[0]
check("tool call name", call.function.name == "get_weather", call)
check("tool call args", '"echo"' in call.function.arguments, call.function.arguments)

stream = client.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True
)
args, name = "", None
for chunk in stream:
    for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name = tc.function.name or name
        args += tc.function.arguments or ""
check("streamed tool call", name == "get_weather" and '"echo"' in args, (name, args))

# Embeddings (the SDK asks for base64 and decodes it).
e = client.embeddings.create(model="fast", input=["one", "two"])
check("embeddings", len(e.data) == 2 and e.data[0].embedding == [0.25, -0.5, 1.0], e.data[0])

# Models.
ids = [m.id for m in client.models.list()]
check("models", ids == ["fast", "quick"], ids)

# Error types map onto the SDK's exception classes.
try:
    OpenAI(base_url=base_url, api_key="wdn_" + "0" * 48, max_retries=0).models.list()
    check("auth error", False, "no exception")
except openai.AuthenticationError as exc:
    check("auth error", exc.status_code == 401 and exc.code == "invalid_api_key", exc)

try:
    OpenAI(base_url=base_url, api_key=limited_key, max_retries=0).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "x"}]
    )
    check("permission error", False, "no exception")
except openai.PermissionDeniedError as exc:
    check("permission error", exc.status_code == 403, exc)

try:
    client.chat.completions.create(model="fast", messages=[])
    check("bad request", False, "no exception")
except openai.BadRequestError as exc:
    check("bad request", exc.status_code == 400 and "messages" in str(exc), exc)

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check("not found", False, "no exception")
except openai.NotFoundError as exc:
    check("not found", exc.status_code == 404 and exc.code == "model_not_found", exc)

# The response cache: a repeated question is answered by Warden itself, and a streaming
# request for it gets the cached answer replayed as Server-Sent Events.
q = [{"role": "user", "content": "cache me"}]
first = client.chat.completions.with_raw_response.create(model="fast", messages=q, temperature=0)
check("cache miss", first.headers.get("x-warden-cache") == "MISS", first.headers)
replayed = client.chat.completions.with_raw_response.create(
    model="fast", messages=q, temperature=0, stream=True, stream_options={"include_usage": True}
)
check("cache hit", replayed.headers.get("x-warden-cache") == "HIT", replayed.headers)
text, usage, finish = "", None, None
for chunk in replayed.parse():
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
    if chunk.usage:
        usage = chunk.usage
check("cached stream replay", text == "echo: cache me" and finish == "stop", (text, finish))
check("cached stream usage", usage is not None and usage.prompt_tokens == 10, usage)

# Warden's own rate limits raise the SDK's RateLimitError, with OpenAI's headers.
user = {"x-warden-user": "sdk-user-1"}
client.chat.completions.create(
    model="fast", messages=[{"role": "user", "content": "once"}], extra_headers=user
)
try:
    client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "twice"}], extra_headers=user
    )
    check("rate limit error", False, "no exception")
except openai.RateLimitError as exc:
    check(
        "rate limit error",
        exc.status_code == 429
        and exc.code == "rate_limit_exceeded"
        and exc.response.headers.get("x-ratelimit-limit-requests") == "1"
        and int(exc.response.headers.get("retry-after", "0")) >= 1,
        (exc, exc.response.headers),
    )

print(f"{checks} passed, 0 failed")
