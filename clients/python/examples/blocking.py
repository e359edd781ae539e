"""The blocking client: the same calls as AsyncClient, without asyncio.

python clients/python/examples/blocking.py [--target HOST:PORT] [--api-key KEY] "prompt"
"""

from __future__ import annotations

import argparse
import sys

from aurea_client import AureaError, Client, Delta, Final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="host:port (default $AUREA_TARGET, else 127.0.0.1:50051)")
    parser.add_argument("--api-key", help="API key (default $AUREA_API_KEY)")
    parser.add_argument("prompt")
    args = parser.parse_args()
    with Client(args.target, api_key=args.api_key, timeout_s=30) as aurea:
        try:
            for event in aurea.stream(args.prompt):
                if isinstance(event, Delta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, Final):
                    print(
                        f"\n[{event.model}: {event.usage.output_tokens} tokens, "
                        f"{event.cost_nanos} nanos]"
                    )
            providers = aurea.admin.list_providers()
            print("providers:", ", ".join(p.name for p in providers.providers))
        except AureaError as err:
            # The error's google.rpc details, decoded: reason, bad fields, retry delay, quotas.
            print(f"{err.code}: {err.message}", file=sys.stderr)
            print(f"  reason={err.reason} request_id={err.request_id}", file=sys.stderr)
            for v in err.field_violations:
                print(f"  field {v.field}: {v.description}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
