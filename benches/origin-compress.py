#!/usr/bin/env python3
"""Origin for benches/compression-hits.sh: /text/N answers N bytes of HTML-ish
text (compresses ~4x), /bin/N N random bytes (application/octet-stream, not
compressed); both cacheable, deterministic per N."""
import http.server
import random
import sys

WORDS = [w.encode() for w in (
    "the edge cache serves objects from memory and disk while origins rest "
    "request response header body stream fill purge shield ring peer site "
    "rule policy encoding brotli gzip zstd vary etag freshness stale").split()]


def text(n):
    rnd = random.Random(n)
    out = bytearray(b"<!doctype html><html><body>\n")
    while len(out) < n:
        out += b"<p class=\"c%d\">" % rnd.randrange(100)
        out += b" ".join(rnd.choice(WORDS) for _ in range(12))
        out += b"</p>\n"
    return bytes(out[:n])


def binary(n):
    return random.Random(n).randbytes(n)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cache = {}

    def do_GET(self):
        kind, _, size = self.path.strip("/").partition("/")
        key = (kind, size)
        if key not in self.cache:
            n = int(size or "1024")
            body, ctype = (text(n), "text/html") if kind == "text" else (binary(n), "application/octet-stream")
            self.cache[key] = (body, ctype)
        body, ctype = self.cache[key]
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
