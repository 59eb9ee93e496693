"""Transport options: TLS with a private CA and the API key on every kind of
call, against an in-process gRPC server that records what arrives, and both
against `taskloom serve` (`--tls-cert --tls-key`, `--api-keys-file`)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from conftest import FAST, Server, worker_chain
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskloom import Client, Task, Tls, Unauthenticated, Unavailable, Worker, from_value
from taskloom.v1 import info_pb2, run_pb2


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass
class Recorder:
    """Answers GetVersion and WatchRun, recording each call's
    authorization."""

    authorizations: list[str] = field(default_factory=list)

    def saw(self, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self.authorizations.append(str(metadata.get("authorization", "")))

    async def GetVersion(
        self, request: info_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> info_pb2.GetVersionResponse:
        self.saw(context)
        return info_pb2.GetVersionResponse(version="recorder")

    async def WatchRun(
        self, request: run_pb2.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[run_pb2.RunEvent]:
        self.saw(context)
        yield run_pb2.RunEvent(
            run_id=request.run_id, seq=1, type=run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED
        )


async def serve(recorder: Recorder, tls: tuple[bytes, bytes] | None) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "taskloom.v1.InfoService",
                {
                    "GetVersion": grpc.unary_unary_rpc_method_handler(
                        recorder.GetVersion,
                        request_deserializer=info_pb2.GetVersionRequest.FromString,
                        response_serializer=info_pb2.GetVersionResponse.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                "taskloom.v1.RunService",
                {
                    "WatchRun": grpc.unary_stream_rpc_method_handler(
                        recorder.WatchRun,
                        request_deserializer=run_pb2.WatchRunRequest.FromString,
                        response_serializer=run_pb2.RunEvent.SerializeToString,
                    )
                },
            ),
        )
    )
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        certificate, key = tls
        credentials = grpc.ssl_server_credentials([(key, certificate)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


async def test_tls_with_a_private_ca_and_an_api_key() -> None:
    certificate, key = self_signed()
    recorder = Recorder()
    server, port = await serve(recorder, (certificate, key))
    try:
        tls = Tls(root_certificates=certificate)
        async with Client(f"https://127.0.0.1:{port}", tls=tls, api_key="s3cret") as client:
            assert (await client.info.version()).version == "recorder"
            events = [e async for e in client.runs.watch("r1")]
            assert [e.type for e in events] == [run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED]
        assert recorder.authorizations == ["Bearer s3cret", "Bearer s3cret"]

        # Without the CA the server's certificate is not trusted.
        async with Client(f"https://127.0.0.1:{port}", retries=1) as untrusting:
            with pytest.raises(Unavailable):
                await untrusting.info.version()
    finally:
        await server.stop(None)


async def test_plaintext_without_a_key_sends_no_authorization() -> None:
    recorder = Recorder()
    server, port = await serve(recorder, None)
    try:
        async with Client(f"http://127.0.0.1:{port}") as client:
            await client.info.version()
        assert recorder.authorizations == [""]
    finally:
        await server.stop(None)


async def test_the_server_serves_tls(tmp_path: Path) -> None:
    certificate, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    tls_args = ["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]
    server = Server(tmp_path / "taskloom.db", [*FAST, *tls_args])
    server.start()
    try:
        address = f"https://127.0.0.1:{server.port}"
        async with Client(address, tls=Tls(root_certificates=certificate)) as client:
            worker = Worker(client, slots=1)

            @worker.task("secure")
            async def secure(task: Task) -> str:
                return f"over TLS: {task.input}"

            serving = asyncio.create_task(worker.run())
            run = await client.runs.start(chain=worker_chain("secure", "secure"), input="x")
            done = await client.runs.wait(run.id, timeout=10)
            assert from_value(done.output) == "over TLS: x"
            await worker.shutdown(grace=1)
            await serving
        async with Client(f"http://127.0.0.1:{server.port}", retries=1) as plaintext:
            with pytest.raises(Unavailable):
                await plaintext.info.version()
    finally:
        server.kill()


async def test_the_server_requires_its_api_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("s3cret\n")
    server = Server(tmp_path / "taskloom.db", [*FAST, "--api-keys-file", str(keys)])
    server.start()
    try:
        for key in (None, "wrong"):
            async with Client(server.address, api_key=key) as refused:
                with pytest.raises(Unauthenticated) as error:
                    await refused.info.version()
                assert error.value.reason == "UNAUTHENTICATED"
                with pytest.raises(Unauthenticated):
                    # A worker with a bad key stops instead of retrying forever.
                    rejected = Worker(refused)
                    rejected.handle("keyed", echo)
                    await asyncio.wait_for(rejected.run(), 10)
        async with Client(server.address, api_key="s3cret") as client:
            worker = Worker(client, slots=1)
            worker.handle("keyed", echo)
            serving = asyncio.create_task(worker.run())
            run = await client.runs.start(chain=worker_chain("keyed", "keyed"), input="x")
            events = [event async for event in client.runs.watch(run.id)]
            assert events[-1].type == run_pb2.RUN_EVENT_TYPE_RUN_SUCCEEDED
            assert from_value((await client.runs.get(run.id)).output) == "echo x"
            await worker.shutdown(grace=1)
            await serving
    finally:
        server.kill()


async def echo(task: Task) -> str:
    return f"echo {task.input}"
