"""Stand-in for the platform's API in the Molecule scenario "rebuild".

GET /api/health/live   200 while the process runs.
GET /api/health/ready  200 {"status": "ready", "rows": {...}} only when every table of READY_TABLES can be read in
                       the database (DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD), else 503 with the error.

``--probe PATH`` asks the running server for PATH and exits 0 on HTTP 200 (the image's health check).
"""

import http.server
import json
import os
import signal
import sys
import urllib.request

HOST = os.environ.get("APP_HOST", "127.0.0.1")
PORT = int(os.environ.get("APP_PORT", "8080"))


def ready():
    """``(status, body)`` of the readiness check."""
    import psycopg2
    from psycopg2 import sql

    tables = [t.strip() for t in os.environ.get("READY_TABLES", "users").split(",") if t.strip()]
    try:
        conn = psycopg2.connect(host=os.environ.get("DB_HOST", "127.0.0.1"), port=int(os.environ.get("DB_PORT", "5432")),
                                dbname=os.environ.get("DB_NAME", "aiteam"), user=os.environ.get("DB_USER", "postgres"),
                                password=os.environ.get("DB_PASSWORD", ""), connect_timeout=3)
    except psycopg2.Error as exc:
        return 503, {"status": "unavailable", "error": str(exc).strip()}
    try:
        rows = {}
        with conn.cursor() as cur:
            for table in tables:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                rows[table] = cur.fetchone()[0]
        return 200, {"status": "ready", "rows": rows}
    except psycopg2.Error as exc:
        return 503, {"status": "unavailable", "error": str(exc).strip()}
    finally:
        conn.close()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "atlasia-standin/1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/api/health/live":
            status, body = 200, {"status": "live"}
        elif self.path == "/api/health/ready":
            status, body = ready()
        else:
            status, body = 404, {"status": "not found"}
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def probe(path):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (HOST, PORT, path), timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        return probe(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))  # PID 1 ignores SIGTERM without a handler
    server = http.server.ThreadingHTTPServer((HOST, PORT), Handler)
    sys.stderr.write("stand-in API on http://%s:%d\n" % (HOST, PORT))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
