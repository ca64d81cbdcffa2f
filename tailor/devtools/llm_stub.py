"""A loopback server that speaks the OpenAI chat-completions and Anthropic messages wire formats.

The real ``openai`` and ``anthropic`` clients talk to it over HTTP, so tests exercise their actual
request building, auth headers, error mapping and response parsing. Behaviour per provider is
scripted: latency, an HTTP error status (500, 429 with a quota or rate-limit body), token usage,
and the JSON content to answer with. Every request body is captured for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Behaviour:
    latency_s: float = 0.0
    status: int = 200
    error_type: str = ""  # e.g. "insufficient_quota" (OpenAI) or "rate_limit_error" (Anthropic)
    retry_after_s: int = 30  # sent with 429s
    # Token usage to report; None estimates it from the text (about four characters a token).
    input_tokens: int | None = None
    output_tokens: int | None = None
    answer: Answer | None = None  # returns the email JSON for a request


@dataclass
class Recorded:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StubLlm:
    openai: Behaviour = field(default_factory=Behaviour)
    anthropic: Behaviour = field(default_factory=Behaviour)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def prompts(self) -> str:
        """Everything any client sent, as one string (for leak assertions)."""
        return "\n".join(json.dumps(r.body) for r in self.requests)


def _audience(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages", [])
    text = str(messages[-1].get("content", "")) if messages else ""
    if "<audience_data>" not in text:
        return {}
    try:
        data: dict[str, Any] = json.loads(text.split("<audience_data>")[1].split("<")[0])
    except ValueError:
        return {}
    return data


def default_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A plausible email for the cluster described in the request, as a small model might
    write it: it uses the category and products it was given, and the placeholders."""
    audience = _audience(body)
    category = audience.get("top_category", "new arrivals")
    picks = [p["name"] for p in audience.get("recommendations", [])][:2]
    cart = "cart" in str(audience.get("campaign_goal", ""))
    opener = (
        "You left {{cart_item}} in your cart, and it is still waiting for you."
        if cart
        else f"We have been restocking {category}, and a few things made us think of you."
    )
    listed = " and ".join(picks) if picks else f"our latest {category}"
    return {
        "subject": "{{first_name}}, picks we chose for you",
        "preheader": f"New in {category}",
        "body": f"Hi {{{{first_name}}}},\n\n{opener}\n\nThis week we would start with {listed}.",
        "cta_text": "See the picks",
    }


def needs_review_answer(body: dict[str, Any]) -> dict[str, Any]:
    """Content a person must look at, whichever prompt asks: for cart clusters it says "cheap"
    (a brand's banned phrase, when the tenant bans it), for the others it is too short and
    impersonal (quality 0.6). Facts and relevance are fine, so it is reviewed, not dropped."""
    answer = default_answer(body)
    if "cart" in answer["body"]:
        answer["body"] += " Everything is cheap this week."
        return answer
    category = answer["preheader"].removeprefix("New in ")
    return {"subject": "Picks for you", "preheader": answer["preheader"],
            "body": f"New {category} picks are in.", "cta_text": "See picks"}  # fmt: skip


def _handler(stub: StubLlm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], retry_after: int = 30) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("retry-after", str(retry_after))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path.endswith("/chat/completions"):
                provider, behaviour = "openai", stub.openai
            elif self.path.endswith("/messages"):
                provider, behaviour = "anthropic", stub.anthropic
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            stub.requests.append(Recorded(provider, self.path, headers, body))
            auth = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not (auth or headers.get("x-api-key")):
                self._send(401, {"error": {"message": "missing api key"}})
                return
            time.sleep(behaviour.latency_s)
            if behaviour.status != 200:
                kind = behaviour.error_type or ("server_error" if behaviour.status >= 500 else "x")
                if provider == "openai":
                    error = {"message": kind, "type": kind, "code": kind}
                    self._send(behaviour.status, {"error": error}, behaviour.retry_after_s)
                else:
                    self._send(
                        behaviour.status,
                        {"type": "error", "error": {"type": kind, "message": kind}},
                        behaviour.retry_after_s,
                    )
                return
            content = json.dumps((behaviour.answer or default_answer)(body))
            used_in = behaviour.input_tokens
            if used_in is None:
                used_in = max(
                    1, len(json.dumps(body.get("messages", [])) + str(body.get("system", ""))) // 4
                )
            used_out = behaviour.output_tokens or max(1, len(content) // 4)
            if provider == "openai":
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": used_in, "completion_tokens": used_out,
                              "total_tokens": used_in + used_out},
                })  # fmt: skip
            else:
                self._send(200, {
                    "id": "msg_stub", "type": "message", "role": "assistant",
                    "model": body.get("model", ""), "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": content}],
                    "usage": {"input_tokens": used_in, "output_tokens": used_out},
                })  # fmt: skip

    return Handler


@contextmanager
def running_stub(port: int = 0) -> Iterator[StubLlm]:
    stub = StubLlm()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
