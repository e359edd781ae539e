"""Builds the adapter a ``ProviderSpec`` asks for, by ``spec.kind``.

Adapters are imported on demand, so a deployment pays only for the kinds it configures (the
``local`` kind's optional dependencies in particular).
"""

from __future__ import annotations

from aurea.providers._base import Provider, ProviderSpec

__all__ = ["KINDS", "build_provider"]

KINDS = ("simulated", "local", "openai", "anthropic", "gemini", "http", "lambda", "runpod")


def build_provider(spec: ProviderSpec) -> Provider:
    """A new adapter for ``spec``; ``ValueError`` naming the allowed kinds if the kind is unknown.

    ``"openai"`` also covers every OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio):
    point ``base_url`` at it.
    """
    kind = spec.kind.strip().lower()
    if kind == "simulated":
        from aurea.providers.simulated import SimulatedProvider

        return SimulatedProvider(spec)
    if kind == "local":
        from aurea.providers.local import LocalModelProvider

        return LocalModelProvider(spec)
    if kind == "openai":
        from aurea.providers.openai import OpenAIProvider

        return OpenAIProvider(spec)
    if kind == "anthropic":
        from aurea.providers.anthropic import AnthropicProvider

        return AnthropicProvider(spec)
    if kind == "gemini":
        from aurea.providers.gemini import GeminiProvider

        return GeminiProvider(spec)
    if kind == "http":
        from aurea.providers.http_generic import GenericHTTPProvider

        return GenericHTTPProvider(spec)
    if kind == "lambda":
        from aurea.providers.aws_lambda import LambdaProvider

        return LambdaProvider(spec)
    if kind == "runpod":
        from aurea.providers.runpod import RunPodProvider

        return RunPodProvider(spec)
    raise ValueError(
        f"provider {spec.name!r}: unknown kind {spec.kind!r}; allowed kinds: {', '.join(KINDS)}"
    )
