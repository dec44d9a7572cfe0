"""``python -m bench NAME [ARGS…]``: run the benchmark module ``bench/NAME.py`` (its ``main``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name.replace("_", "-")
        for m in pkgutil.iter_modules([str(here)])
        if m.name not in ("runner", "__main__") and not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench NAME [ARGS…]\nbenchmarks: " + ", ".join(available()))
        return 0 if argv else 2
    name = argv[0]
    if name not in available():
        print(f"no benchmark {name!r}; choose one of: {', '.join(available())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name.replace('-', '_')}")
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
