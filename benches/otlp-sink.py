#!/usr/bin/env python3
"""A collector stand-in for benches: accepts OTLP/HTTP POST /v1/traces and
answers 200 with an empty ExportTraceServiceResponse, discarding the spans
(benches/callgrind.sh with a [tracing] EXTRA). Counts what it got on exit.
    benches/otlp-sink.py PORT
"""
import http.server
import signal
import sys

received = {"requests": 0, "bytes": 0}


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        received["requests"] += 1
        received["bytes"] += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)

    def stop(*_):
        print(f"otlp-sink: {received['requests']} exports, {received['bytes']} bytes", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
