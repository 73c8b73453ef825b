"""Generated client ids always meet the client id rules (auth/clients.py CLIENT_ID): a client
registered without an id must never be refused for the id the server chose for it (a regression:
URL-safe tokens start with ``-`` or ``_`` one time in 32, and ``healthbridge clients create``
then failed with "a client id is 1-64 letters, digits and . _ -")."""

from __future__ import annotations

from healthbridge.auth.clients import CLIENT_ID, Client, ClientStore, new_client_id
from healthbridge.store.instants import system_clock
from healthbridge.store.memory_records import MemoryRecords


def test_generated_ids_are_always_valid() -> None:
    assert all(CLIENT_ID.fullmatch(new_client_id()) for _ in range(5000))


async def test_registering_without_an_id_never_fails() -> None:
    store = ClientStore(MemoryRecords(system_clock))
    client = Client("", "Web app", "none", ("https://app.example/cb",), scope="patient/*.rs")
    ids = set()
    for _ in range(300):
        stored, secret = await store.register(client)
        assert CLIENT_ID.fullmatch(stored.client_id) and secret is None
        ids.add(stored.client_id)
    assert len(ids) == 300
