"""A real OpenAI-compatible chat-completions server on loopback for the T2I tests.

It speaks the wire protocol (GET /v1/models, POST /v1/chat/completions) over HTTP from a
thread. What it answers stands in for a real model's judgement: a message with an image
(a PNG data URI) gets the oracle's reading of that image as a JSON verdict; a prompt-screen
request gets a keyword verdict; anything else (the writer) gets a caption. `mode="invalid"`
answers prose instead of JSON, to test that a bad verdict is undetermined.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


class VisionServer:
    def __init__(self, mode: str = "oracle") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "tiny-vlm"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                server.requests.append(body)
                text = server.answer(body["messages"])
                self._send(200, {"id": "x", "object": "chat.completion", "model": "tiny-vlm",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant",
                                                          "content": text}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> VisionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, messages: list[dict[str, Any]]) -> str:
        if self.mode == "invalid":
            return "I think this image is probably fine, but I cannot say."
        last = messages[-1]["content"]
        if isinstance(last, list):
            url = next(p["image_url"]["url"] for p in last if p.get("type") == "image_url")
            return self._judge_image(url)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        if "screen prompts" in system:
            from swisscheese.t2i.filters.keyword import default_keywords
            from swisscheese.t2i.world import VisualWorld, contains_phrase, words_of

            tokens = words_of(last)
            hit = next((c for k, c in default_keywords(VisualWorld(0)).items()
                        if contains_phrase(tokens, k)), None)
            return json.dumps({"unsafe": hit is not None, "score": 1.0 if hit else 0.0,
                               "category": hit, "reason": "keyword screen"})
        # The writer: a different ordinary caption each time, as a sampling LLM would.
        import random

        from swisscheese.t2i.world import VisualWorld

        return VisualWorld(0).benign_caption(random.Random(len(self.requests)))

    def _judge_image(self, url: str) -> str:
        from PIL import Image

        from swisscheese.t2i.oracle import oracle_verdict

        png = base64.b64decode(url.split(",", 1)[1])
        img = Image.open(io.BytesIO(png)).convert("RGB").resize((16, 16), Image.NEAREST)
        v = oracle_verdict(np.asarray(img))
        return "```json\n" + json.dumps({
            "unsafe": bool(v.score is not None and v.score >= 0.5),
            "score": 0.5 if v.score is None else v.score, "category": v.category,
            "reason": v.reason, "instruction": "add another mood word"}) + "\n```"
