"""Key management and namespaces against a real server: the first key,
created in open mode, closes the server; roles, namespace bindings and
revocation are enforced."""

from __future__ import annotations

import pytest
from conftest import Server

from taskloom import Client
from taskloom.errors import InvalidArgument, PermissionDenied, Unauthenticated


async def test_keys_roles_and_namespaces(server: Server) -> None:
    async with Client(server.address) as open_client:
        admin = await open_client.keys.create("first admin", "admin")
    assert admin.secret.startswith("tlk_")
    assert admin.key.prefix == admin.secret[:8]

    async with Client(server.address) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.info.version()

    async with Client(server.address, api_key=admin.secret) as client:
        # Calls may name only namespaces that exist.
        await client.namespaces.create("team-a")
        viewer = await client.keys.create("viewer", "viewer", ttl=3600)
        team = await client.keys.create("team", "operator", namespace="team-a")
        listed = await client.keys.list()
        assert [key.id for key in listed] == [admin.key.id, viewer.key.id, team.key.id]
        assert all(not hasattr(key, "secret") for key in listed)
        assert listed[1].HasField("expire_time")

    async with Client(server.address, api_key=viewer.secret) as client:
        await client.chains.list()
        with pytest.raises(PermissionDenied) as denied:
            await client.keys.list()
        assert denied.value.reason == "PERMISSION_MISSING"
        assert denied.value.metadata["role"] == "viewer"
        assert denied.value.metadata["permission"] == "keys.manage"

    async with Client(server.address, api_key=team.secret, namespace="team-a") as client:
        await client.chains.list()
    async with Client(server.address, api_key=team.secret, namespace="team-b") as client:
        with pytest.raises(PermissionDenied) as denied:
            await client.chains.list()
        assert denied.value.reason == "NAMESPACE_NOT_ALLOWED"
    async with Client(server.address, api_key=admin.secret, namespace="Team_B") as client:
        with pytest.raises(InvalidArgument):
            await client.chains.list()

    async with Client(server.address, api_key=admin.secret) as client:
        revoked = await client.keys.revoke(viewer.key.id)
        assert revoked.HasField("revoke_time")
    async with Client(server.address, api_key=viewer.secret) as client:
        with pytest.raises(Unauthenticated):
            await client.chains.list()
