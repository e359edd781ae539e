"""A tool loop: the model asks for tools, the program runs them and sends the results back, until
the model answers in text. Echoing ``answer.message()`` keeps the tool calls and the reasoning
blocks that thinking models (Anthropic, Gemini) need to see again.

python clients/python/examples/tools.py [--target HOST:PORT] [--api-key KEY] [--model NAME]
    [--reasoning low|medium|high] "question"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aurea_client import AsyncClient, AureaError, Message, Tool

WEATHER = Tool(
    "get_weather",
    "The current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def run_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if name == "get_weather":
        return {"city": arguments.get("city"), "temp_c": 21, "sky": "clear"}
    return {"error": f"no tool {name}"}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="host:port (default $AUREA_TARGET, else 127.0.0.1:50051)")
    parser.add_argument("--api-key", help="API key (default $AUREA_API_KEY)")
    parser.add_argument("--model", default="", help="catalog name (default: routed)")
    parser.add_argument("--reasoning", choices=["low", "medium", "high"])
    parser.add_argument("question")
    args = parser.parse_args()
    messages: list[Message] = [Message("user", args.question)]
    async with AsyncClient(args.target, api_key=args.api_key, timeout_s=60) as aurea:
        try:
            for _ in range(5):  # a bound on the turns, in case the model keeps calling
                answer = await aurea.generate(
                    messages=messages,
                    model=args.model,
                    tools=[WEATHER],
                    reasoning_effort=args.reasoning,
                )
                if answer.reasoning:
                    print(f"[reasoning] {answer.reasoning}")
                messages.append(answer.message())
                if not answer.tool_calls:
                    print(f"answer: {answer.text}")
                    return 0
                for call in answer.tool_calls:
                    result = run_tool(call.name, call.parsed_arguments())
                    print(f"tool {call.name}({call.arguments}) -> {result}")
                    messages.append(Message.tool_result(call.id, result))
        except AureaError as err:
            print(f"{err.code}: {err.message}", file=sys.stderr)
            return 1
    print("no answer after 5 turns", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
