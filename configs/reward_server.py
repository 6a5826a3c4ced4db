"""A minimal reward server for configs/http_reward.yaml: POST /score with the `http` component's
request ({"prompts", "completions", "answer", ...}: one value per completion) answers
{"scores": [...]}, 1.0 where the completion's first line equals the answer. Loopback only."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would flood the terminal
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pairs = zip(body["completions"], body["answer"])
        scores = [float(c.strip().split("\n")[0] == (a or "")) for c, a in pairs]
        data = json.dumps({"scores": scores}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8765), Handler).serve_forever()
