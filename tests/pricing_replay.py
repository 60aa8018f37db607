"""A Price List API on 127.0.0.1 that answers GetProducts from a file of answers.

moto has no Pricing API. This serves ``tests/data/pricing_get_products.json``
to a real boto3 ``pricing`` client (its ``endpoint_url`` pointed here): the
request is parsed as botocore sends it (JSON 1.1, ``AWSPriceListService.GetProducts``)
and answered with the page of the instance type its ``instanceType`` filter
names (an empty page for a type the file does not have).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ANSWERS = Path(__file__).parent / "data" / "pricing_get_products.json"


@contextmanager
def pricing_replay() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(endpoint URL, the requests it received) while the server runs."""
    answers = json.loads(ANSWERS.read_text())["answers"]
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            received.append({"target": self.headers.get("X-Amz-Target"), **body})
            wanted = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
            page = answers.get(wanted.get("instanceType", ""),
                               {"FormatVersion": "aws_v1", "PriceList": []})
            data = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
