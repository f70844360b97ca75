"""Print table_digests() (tests/support/postgres.py) of a database reached over TCP, as JSON.

The restored database of the scenario runs in a container on the host network, so it is compared with the
backed-up one from the controller: python molecule/rebuild/resources/digest.py --port P --password-file F --db D
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from tests.support.postgres import PostgresServer, table_digests  # noqa: E402


class TcpServer(PostgresServer):
    """A server reached over 127.0.0.1 with a password (psql -h takes the host instead of a socket directory)."""

    @property
    def socket_dir(self):
        return self.host


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    with open(args.password_file) as handle:
        password = handle.read().strip()
    server = TcpServer(port=args.port, user=args.user, password=password)
    print(json.dumps(table_digests(server, args.db), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
