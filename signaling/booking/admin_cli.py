"""``visio admin …``: bootstrap an organisation and its first admin from a shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys

from signaling.booking.accounts import AccountError, NewOrganisation, create_organisation
from signaling.booking.database import Database, database_url
from signaling.booking.models import DEFAULT_TIME_ZONE
from signaling.settings import add_storage_arguments


def configure_parser(admin: argparse.ArgumentParser) -> None:
    commands = admin.add_subparsers(dest="admin_command", required=True)
    create = commands.add_parser(
        "create-org", help="create an organisation, its first admin and its API key",
        description="Creates an organisation (a school, a town hall, a company) with its first "
                    "admin, who logs in at /booking/, and prints the organisation's API key "
                    "once. Migrations are applied first.")
    create.add_argument("--name", required=True, help="organisation name, e.g. 'École Jaurès'")
    create.add_argument("--admin-email", required=True, help="the first admin's e-mail")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the admin password from standard input (default: prompt)")
    create.add_argument("--time-zone", default=DEFAULT_TIME_ZONE,
                        help=f"IANA time zone bookings are shown in (default {DEFAULT_TIME_ZONE})")
    create.add_argument("--room", action="append", default=[], metavar="NAME:CAPACITY",
                        help="a room to create, e.g. 'Salle B:30' (repeatable)")
    create.add_argument("--json", action="store_true", help="print the result as JSON")
    add_storage_arguments(create)


def main(args: argparse.Namespace) -> int:
    if args.admin_command == "create-org":
        return _create_org(args)
    return 2


def _create_org(args: argparse.Namespace) -> int:
    rooms: list[tuple[str, int]] = []
    for spec in args.room:
        name, _, capacity = spec.rpartition(":")
        if not name or not capacity.isdigit():
            print(f"visio admin: --room wants NAME:CAPACITY, got {spec!r}", file=sys.stderr)
            return 2
        rooms.append((name, int(capacity)))
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password for the admin: ")
        if getpass.getpass("Same password again: ") != password:
            print("visio admin: the passwords differ", file=sys.stderr)
            return 2
    try:
        created, room_names = asyncio.run(_create(args, password, rooms))
    except AccountError as exc:
        print(f"visio admin: {exc.field}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"organisation_id": created.organisation_id,
                          "admin_id": created.admin_id, "api_key": created.api_key,
                          "rooms": [{"id": i, "name": n}
                                    for i, n in zip(created.room_ids, room_names, strict=True)]}))
    else:
        print(f"Organisation {created.organisation_id} created; {args.admin_email} can log in "
              "at /booking/login.")
        print(f"API key (shown only now, keep it safe): {created.api_key}")
    return 0


async def _create(args: argparse.Namespace, password: str,
                  rooms: list[tuple[str, int]]) -> tuple[NewOrganisation, list[str]]:
    db = Database(database_url(args.data_dir, args.database_url))
    try:
        await db.upgrade()
        created = await create_organisation(db, args.name, args.admin_email, password,
                                            args.time_zone, rooms)
        return created, [" ".join(name.split()) for name, _ in rooms]
    finally:
        await db.close()
