"""`llamba list`: the catalog's models and which are present in the cache."""

from __future__ import annotations

import json

from ..engine.catalog import cache_dir, is_present, load_catalog, model_path


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    catalog = load_catalog()
    rows = [
        {
            "name": e.name,
            "default": e.name == catalog.default,
            "present": is_present(e),
            "size": e.size,
            "path": str(model_path(e)),
            "description": e.description,
        }
        for e in catalog.entries.values()
    ]
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "models": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    print(f"cache: {cache_dir()}")
    for r in rows:
        mark = "*" if r["default"] else " "
        state = "present" if r["present"] else "not pulled"
        print(
            f"{mark} {r['name']:<{width}} {r['size'] / 1e6:7.1f} MB  {state:<10}  {r['description']}"
        )
    print("(* default)")
    return 0
