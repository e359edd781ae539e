"""Aurea from asyncio with aurea_client: a completion, a stream, embeddings and a look at the
server, then one refused call and what its error carries.

    python clients/python/examples/quickstart.py [--target HOST:PORT] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aurea_client import AsyncClient, Delta, Fallback, Final, InvalidArgument, Started


async def main(target: str | None, api_key: str | None) -> int:
    async with AsyncClient(target, api_key=api_key, timeout_s=30) as aurea:
        info = await aurea.admin.get_info()
        print(f"server: {info.name} {info.version}")

        answer = await aurea.generate("Say hello", system="Be brief.", max_tokens=16)
        print(f"generate: {answer.text!r}")
        print(
            f"  model={answer.model} provider={answer.provider} "
            f"tokens={answer.usage.input_tokens}+{answer.usage.output_tokens} "
            f"cost_nanos={answer.cost_nanos}"
        )

        print("stream: ", end="")
        async for event in aurea.stream("Count to five", policy="cost", job_id="quickstart"):
            if isinstance(event, Started):
                chosen = event.model
            elif isinstance(event, Fallback):
                print(f"[fallback to {event.to_model}: {event.cause}]", end="")
            elif isinstance(event, Delta):
                print(event.text, end="", flush=True)
            elif isinstance(event, Final):
                print(
                    f"\n  started on {chosen}, answered by {event.model}, "
                    f"finish={event.finish_reason} cost_nanos={event.cost_nanos}"
                )

        vectors = await aurea.embed(["first text", "second text"])
        print(f"embed: {len(vectors.vectors)} vectors of {len(vectors.vectors[0])} dims")

        try:
            await aurea.generate("")
        except InvalidArgument as err:
            print(f"refused: {err.code} reason={err.reason} fields={err.fields}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="host:port (default $AUREA_TARGET, else 127.0.0.1:50051)")
    parser.add_argument("--api-key", help="API key (default $AUREA_API_KEY)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.target, args.api_key)))
