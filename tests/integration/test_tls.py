"""TLS and mTLS on every port (gRPC, the OpenAI door, the metrics side port) with certificates
the test makes: calls succeed over TLS with the right CA; plaintext and an untrusted server
certificate fail; under mTLS a client without a certificate, or with one from another CA, is
refused on every port; a reload (SIGHUP's work) serves new files to new connections, and a failed
reload keeps the old ones."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
import tls_certs

from aurea.server import AureaServer
from aurea.testing import test_settings as make_settings
from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

openai = pytest.importorskip("openai")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tls_certs.AVAILABLE, reason="needs cryptography or openssl"),
]

ISOLATED = {"ledger": {"store": "memory"}, "routing": {"stats_store": "memory"}}
TIMEOUT = 20.0


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = tls_certs.make_ca(root / "ca1", "one")
        self.other_ca = tls_certs.make_ca(root / "ca2", "two")
        self.server = tls_certs.issue(self.ca, root / "ca1", "server", server=True)
        self.client = tls_certs.issue(self.ca, root / "ca1", "client", server=False)
        self.stranger = tls_certs.issue(self.other_ca, root / "ca2", "stranger", server=False)
        # The files the server is configured with (a reload reads them again).
        self.live = root / "live"
        self.live.mkdir()
        self.install(self.server)

    def install(self, pair: tls_certs.Pair) -> None:
        shutil.copyfile(pair.cert, self.live / "server.crt")
        shutil.copyfile(pair.key, self.live / "server.key")

    def tls(self, *, mtls: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cert_file": str(self.live / "server.crt"),
            "key_file": str(self.live / "server.key"),
        }
        if mtls:
            out |= {"client_ca_file": str(self.ca.cert), "require_client_cert": True}
        return out


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def _serve(pki: Pki, *, mtls: bool) -> AsyncIterator[AureaServer]:
    settings = make_settings({"tls": pki.tls(mtls=mtls), **ISOLATED})
    server = AureaServer(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace_s=0)


@pytest_asyncio.fixture
async def tls_server(pki: Pki) -> AsyncIterator[AureaServer]:
    async for s in _serve(pki, mtls=False):
        yield s


@pytest_asyncio.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[AureaServer]:
    async for s in _serve(pki, mtls=True):
        yield s


def _channel(
    server: AureaServer, ca: Path, client: tls_certs.Pair | None = None
) -> grpc.aio.Channel:
    chain, key = client.read() if client else (None, None)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(), private_key=key, certificate_chain=chain
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{server.port}", creds)


async def _generate(channel: grpc.aio.Channel) -> pb.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    return await stub.Generate(pb.GenerateRequest(prompt="hello over tls"), timeout=TIMEOUT)


def _ssl(ca: Path, client: tls_certs.Pair | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


async def _chat(server: AureaServer, ctx: ssl.SSLContext | bool) -> Any:
    client = openai.AsyncOpenAI(
        base_url=f"https://127.0.0.1:{server.http_port}/v1",
        api_key="unused",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=ctx, timeout=TIMEOUT),
    )
    async with client:
        return await client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hello over tls"}]
        )


async def _healthz(server: AureaServer, ctx: ssl.SSLContext) -> int:
    url = f"https://127.0.0.1:{server.metrics_port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as resp:
        return resp.status


async def test_tls_on_every_port(tls_server: AureaServer, pki: Pki) -> None:
    async with _channel(tls_server, pki.ca.cert) as channel:
        answer = await _generate(channel)
        assert answer.text
    completion = await _chat(tls_server, _ssl(pki.ca.cert))
    assert completion.choices[0].message.content
    assert await _healthz(tls_server, _ssl(pki.ca.cert)) == 200


async def test_plaintext_and_untrusted_certificates_fail(tls_server: AureaServer, pki: Pki) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _generate(channel)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    async with _channel(tls_server, pki.other_ca.cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _generate(channel)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(openai.APIConnectionError):
        await _chat(tls_server, _ssl(pki.other_ca.cert))


async def test_mtls_with_a_client_certificate(mtls_server: AureaServer, pki: Pki) -> None:
    async with _channel(mtls_server, pki.ca.cert, pki.client) as channel:
        assert (await _generate(channel)).text
    completion = await _chat(mtls_server, _ssl(pki.ca.cert, pki.client))
    assert completion.choices[0].message.content
    assert await _healthz(mtls_server, _ssl(pki.ca.cert, pki.client)) == 200


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
async def test_mtls_refuses_a_client_without_a_trusted_certificate(
    mtls_server: AureaServer, pki: Pki, who: str
) -> None:
    client = None if who == "no certificate" else pki.stranger
    async with _channel(mtls_server, pki.ca.cert, client) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _generate(channel)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(openai.APIConnectionError):
        await _chat(mtls_server, _ssl(pki.ca.cert, client))
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await _healthz(mtls_server, _ssl(pki.ca.cert, client))


async def test_reload_serves_new_files_to_new_connections(
    tls_server: AureaServer, pki: Pki
) -> None:
    third = tls_certs.make_ca(pki.root / "ca3", "three")
    renewed = tls_certs.issue(third, pki.root / "ca3", "server-renewed", server=True)
    pki.install(renewed)
    assert tls_server.reload_tls()
    async with _channel(tls_server, third.cert) as channel:
        assert (await _generate(channel)).text
    async with _channel(tls_server, pki.ca.cert) as channel:  # the old certificate is gone
        with pytest.raises(grpc.aio.AioRpcError):
            await _generate(channel)
    completion = await _chat(tls_server, _ssl(third.cert))
    assert completion.choices[0].message.content
    assert await _healthz(tls_server, _ssl(third.cert)) == 200


async def test_a_failed_reload_keeps_serving_the_old_files(
    tls_server: AureaServer, pki: Pki
) -> None:
    # A key that does not belong to the certificate: refused, nothing changes.
    shutil.copyfile(pki.client.key, pki.live / "server.key")
    assert not tls_server.reload_tls()
    async with _channel(tls_server, pki.ca.cert) as channel:
        assert (await _generate(channel)).text
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{tls_server.port}",
        grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes()),
    ) as channel:
        info = await admin_pb2_grpc.AdminServiceStub(channel).GetInfo(
            admin_pb2.GetInfoRequest(), timeout=TIMEOUT
        )
        assert info.version
