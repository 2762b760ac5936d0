"""Benchmarks of the SFU (placeholder: the forwarding benchmark lands here)."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_subparsers(dest="bench", required=True)


def main(args: argparse.Namespace) -> int:
    return 0
