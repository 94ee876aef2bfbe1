#!/usr/bin/env python3
"""Container health checks for the featurebus image (compose healthchecks, Kubernetes exec probes).

    featurebus-healthcheck http URL [--status 200]   # an HTTP GET answers one of the statuses
    featurebus-healthcheck tcp HOST:PORT              # something listens there
    featurebus-healthcheck kafka                      # a broker of FEATUREBUS_KAFKA_BOOTSTRAP listens

The image has no curl: this is the standard library only, and `kafka` reads the bootstrap list
through the services' own settings class, as the services do. Exit 0 means healthy.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def http_ok(url: str, statuses: set[int]) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:  # a 4xx/5xx answer is still an answer
        status = exc.code
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False
    if status not in statuses:
        print(f"{url}: HTTP {status}", file=sys.stderr)
    return status in statuses


def tcp_ok(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S):
            return True
    except OSError as exc:
        print(f"{address}: {exc}", file=sys.stderr)
        return False


def kafka_ok() -> bool:
    from featurebus.common.settings import CommonSettings

    return any(tcp_ok(server.strip()) for server in CommonSettings().kafka_bootstrap.split(",") if server.strip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="featurebus-healthcheck")
    checks = parser.add_subparsers(dest="check", required=True)
    http = checks.add_parser("http")
    http.add_argument("url")
    http.add_argument("--status", type=int, action="append", help="an accepted status (repeatable; default 200)")
    tcp = checks.add_parser("tcp")
    tcp.add_argument("address")
    checks.add_parser("kafka")
    args = parser.parse_args(argv)
    if args.check == "http":
        healthy = http_ok(args.url, set(args.status or [200]))
    elif args.check == "tcp":
        healthy = tcp_ok(args.address)
    else:
        healthy = kafka_ok()
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
