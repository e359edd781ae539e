"""Gemini's error bodies and what it refuses in function calls and declarations, for the fake
Gemini API (``aurea.testing.fakes.gemini``)."""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


def _error(code: int, status: str, message: str, details: list[Any] | None = None) -> Any:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


_BAD_KEY = _error(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ],
)


def _parts(content: Any, key: str) -> list[dict[str, Any]]:
    parts = content.get("parts", []) if isinstance(content, dict) else []
    return [p for p in parts if isinstance(p, dict) and key in p]


def _rich_problem(body: dict[str, Any]) -> str:
    """What Gemini would refuse in function calls and declarations ("" for nothing)."""
    contents = body.get("contents") or []
    for i, content in enumerate(contents):
        responses = _parts(content, "functionResponse")
        if not responses:
            continue
        calls = _parts(contents[i - 1], "functionCall") if i else []
        if not calls:
            return (
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if len(calls) != len(responses):
            return (
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        for r in responses:
            if not r["functionResponse"].get("name"):
                return (
                    f"* GenerateContentRequest.contents[{i}].parts.function_response.name: "
                    "Name cannot be empty.\n"
                )
    for tool in body.get("tools") or []:
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            params = decl.get("parameters")
            kind = str((params or {}).get("type", "")).upper()
            if params is not None and kind == "OBJECT" and not params.get("properties"):
                return (
                    f"* GenerateContentRequest.tools[0].function_declarations[{j}].parameters"
                    ".properties: should be non-empty for OBJECT type\n"
                )
    return ""
