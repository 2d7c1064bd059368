"""The benches' origin: 1 KiB bodies, cacheable for an hour, on PORT;
under /nocache/ the same bodies with `Cache-Control: no-store` (passes);
under /text/ as `text/html` (compressible: the encoded-hit path).

    python3 benches/origin-1k.py PORT &
"""
import http.server
import sys

body = b"x" * 1024


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path.startswith("/text/"):
            self.send_header("Content-Type", "text/html")
        if self.path.startswith("/nocache/"):
            self.send_header("Cache-Control", "no-store")
        else:
            self.send_header("Cache-Control", "max-age=3600")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
