"""`llamba pull NAME`: fetch a catalog model into the cache and verify its sha256."""

from __future__ import annotations

from ..engine.catalog import SOURCES, load_catalog, pull


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="catalog name (default: the catalog's default model)")
    p.add_argument("--force", action="store_true", help="fetch again even if present")
    p.add_argument("--source", choices=list(SOURCES), help="only this source (default: try each)")


def run(args) -> int:
    name = args.name or load_catalog().default
    sources = (args.source,) if args.source else tuple(SOURCES)
    path = pull(name, force=args.force, sources=sources)
    print(path)
    return 0
