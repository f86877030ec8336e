"""A stand-in for W&B's server on 127.0.0.1, answering GraphQL with responses recorded in the shape the
real server sends (tests/runs/wandb_api/). `wandb.Api` talks to it through its own transport (wandb-core
does the HTTP), so a test exercises the same client code path as a real `--from-wandb`, with no network.
Test-only."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", "wandb_api")


def recorded(name: str) -> dict:
    with open(os.path.join(RECORDED, name)) as fh:
        return json.load(fh)


class FakeWandbServer:
    """Serves the viewer and the Runs query (paged by cursor); records every GraphQL request it gets
    in `requests` and answers anything else with a GraphQL error, as the server does for an unknown
    field."""

    def __init__(self, pages: list[dict]):
        self.pages, self.requests = pages, []
        cursors = {None: 0}
        for i, page in enumerate(pages[:-1]):
            cursors[page["data"]["project"]["runs"]["pageInfo"]["endCursor"]] = i + 1
        self.cursors = cursors

    def answer(self, body: dict) -> dict:
        self.requests.append(body)
        query, variables = body.get("query", ""), body.get("variables") or {}
        if "query Runs(" in query:
            return self.pages[self.cursors[variables.get("cursor")]]
        if "viewer" in query:
            return recorded("viewer.json")
        return {"errors": [{"message": "Cannot query this operation on the stand-in server",
                            "locations": [{"line": 1, "column": 1}]}], "data": None}

    def __enter__(self) -> FakeWandbServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                out = json.dumps(server.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def runs_queries(self) -> list[dict]:
        return [r for r in self.requests if "query Runs(" in r.get("query", "")]
