"""The ``visio`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import uvloop
from aiohttp import web

from signaling import worker_admin
from signaling.app import create_app
from signaling.booking import admin_cli
from signaling.booking.secret_key import resolve_secret_key
from signaling.cluster import admin as cluster_cli
from signaling.cluster.node import ClusterUnavailable
from signaling.logs import configure_logging
from signaling.settings import Settings, add_serve_arguments, settings_from_arguments
from signaling.tls import ReloadingCertificate, server_context, write_dev_certificate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visio", description="visio videoconference server")
    parser.add_argument("--log-level", default=os.environ.get("VISIO_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING (env VISIO_LOG_LEVEL, default INFO)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        default=os.environ.get("VISIO_LOG_FORMAT", "text"),
                        help="text, or one JSON object per line with room and participant ids "
                             "(env VISIO_LOG_FORMAT, default text); tokens are always redacted")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run signaling, SFU and web client in one process")
    add_serve_arguments(serve)
    dev_cert = commands.add_parser("dev-cert", help="write a self-signed certificate for "
                                                    "https://127.0.0.1 and https://localhost")
    dev_cert.add_argument("--cert", type=Path, default=Path("data/dev-cert.pem"),
                          help="certificate file to write (default data/dev-cert.pem)")
    dev_cert.add_argument("--key", type=Path, default=Path("data/dev-key.pem"),
                          help="private key file to write (default data/dev-key.pem)")
    admin = commands.add_parser("admin", help="create organisations and their admins")
    admin_cli.configure_parser(admin)
    cluster = commands.add_parser("cluster", help="several nodes: list them, drain one, "
                                                  "tell a room (docs/deployment.md)")
    cluster_cli.configure_parser(cluster)
    workers = commands.add_parser("workers", help="this node's SFU workers: list, drain one "
                                                  "(docs/ipc.md)")
    worker_admin.configure_parser(workers)
    bench = commands.add_parser("bench", add_help=False,
                                help="measure the SFU (see docs/benchmarks.md)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    loadtest = commands.add_parser("loadtest", add_help=False,
                                   help="capacity ramp of light participants (docs/loadtest.md)")
    loadtest.add_argument("loadtest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.command == "serve":
        try:
            settings = settings_from_arguments(args)
            settings = replace(settings, secret_key=resolve_secret_key(
                settings.secret_key, settings.data_dir, settings.development))
            if settings.tls_cert is not None and settings.tls_key is not None:
                server_context(settings.tls_cert, settings.tls_key)  # a bad pair fails here
        except (ValueError, OSError) as exc:
            parser.error(str(exc))
        try:
            uvloop.run(serve_forever(settings))
        except ClusterUnavailable as exc:
            parser.exit(1, f"visio serve: {exc}\n")
    elif args.command == "dev-cert":
        write_dev_certificate(args.cert, args.key)
        print(f"wrote {args.cert} and {args.key} (self-signed, for localhost, 127.0.0.1, ::1)\n"
              f"serve with: visio serve --tls-cert {args.cert} --tls-key {args.key}")
    elif args.command == "admin":
        return admin_cli.main(args)
    elif args.command == "cluster":
        return cluster_cli.main(args)
    elif args.command == "workers":
        return worker_admin.main(args)
    elif args.command == "bench":
        # Imported only here: the server never loads the load-generation code.
        from loadtest import bench as bench_module

        bench_parser = argparse.ArgumentParser(prog="visio bench")
        bench_module.configure_parser(bench_parser)
        return bench_module.main(bench_parser.parse_args(args.bench_args))
    elif args.command == "loadtest":
        if args.loadtest_args[:1] != ["capacity"]:
            parser.exit(2, "usage: visio loadtest capacity [options] (see --help)\n")
        from loadtest import capacity

        return capacity.main(args.loadtest_args[1:], prog="visio loadtest capacity")
    return 0


async def serve_forever(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then close every room cleanly."""
    app = create_app(settings)
    certificate = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        certificate = ReloadingCertificate(settings.tls_cert, settings.tls_key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port,
                       ssl_context=certificate.context if certificate else None)
    await site.start()
    logging.getLogger("visio").info(
        "visio listening on %s://%s:%d (ICE announces %s, binds %s), %s mode; "
        "bookings at /booking/", "https" if certificate else "http", settings.host,
        settings.port, settings.ice.announced_address, settings.ice.bind_address,
        "DEVELOPMENT" if settings.development else "production")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if certificate is not None:
        loop.add_signal_handler(signal.SIGHUP, certificate.reload)
        certificate.start_watching()
    await stop.wait()
    if certificate is not None:
        await certificate.stop_watching()
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
