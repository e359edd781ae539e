"""What a refused call carries: one call per kind of refusal, each caught as its typed
exception, with the google.rpc details the server attached.

    python clients/python/examples/errors.py [--target HOST:PORT] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aurea_client import NO_RETRY, AsyncClient, AureaError, InvalidArgument, NotFound


def show(err: AureaError) -> None:
    print(f"{type(err).__name__}: code={err.code} reason={err.reason}")
    print(f"  message: {err.message}")
    for v in err.field_violations:
        print(f"  field {v.field}: {v.description}")
    for q in err.quota_violations:
        print(f"  quota {q.subject}: {q.description}")
    if err.retry_delay_s is not None:
        print(f"  retry after {err.retry_delay_s:g} s")


async def main(target: str | None, api_key: str | None) -> int:
    async with AsyncClient(target, api_key=api_key, retry=NO_RETRY, timeout_s=30) as aurea:
        try:
            await aurea.generate(messages=[("user", "")], max_tokens=-1)
        except InvalidArgument as err:
            show(err)
        try:
            await aurea.generate("hi", model="no-such-model")
        except NotFound as err:
            show(err)
        try:
            await aurea.embed([])
        except AureaError as err:
            show(err)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="host:port (default $AUREA_TARGET, else 127.0.0.1:50051)")
    parser.add_argument("--api-key", help="API key (default $AUREA_API_KEY)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.target, args.api_key)))
