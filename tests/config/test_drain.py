"""The drain's ASGI side and its order (config/drain.py), without Daphne: tests/integration/test_drain.py runs the
real SIGTERM."""

from __future__ import annotations

import asyncio

import pta_protocol as protocol

from config.drain import DrainAware, NodeState, drain


async def answer_after(event: asyncio.Event, scope, receive, send) -> None:
    await event.wait()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def call(app, scope, events=({"type": "http.request", "body": b""},)):
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, queue.get, send)
    return sent


def headers(sent: list[dict]) -> list[tuple[bytes, bytes]]:
    return next(m for m in sent if m["type"] == "http.response.start")["headers"]


async def test_a_request_answered_while_draining_tells_the_client_to_close_its_connection():
    state, go = NodeState(), asyncio.Event()
    app = DrainAware(lambda scope, receive, send: answer_after(go, scope, receive, send), state)
    go.set()
    assert headers(await call(app, {"type": "http"})) == [(b"connection", b"keep-alive")]
    state.draining = True
    assert headers(await call(app, {"type": "http"})) == [(b"connection", b"close")]  # replaced, not added


async def test_requests_in_flight_are_counted_until_answered():
    state, go = NodeState(), asyncio.Event()
    app = DrainAware(lambda scope, receive, send: answer_after(go, scope, receive, send), state)
    calls = [asyncio.create_task(call(app, {"type": "http"})) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert state.http_in_flight == 3
    go.set()
    await asyncio.gather(*calls)
    assert state.http_in_flight == 0


async def test_an_agent_that_connects_to_a_draining_node_is_sent_on_with_node_leaving():
    """nginx may reuse a kept-alive connection to the draining node for an agent's WebSocket upgrade: the agent
    must not settle there (its requests would be lost with the node)."""
    state = NodeState()
    state.draining = True

    async def never(scope, receive, send) -> None:
        raise AssertionError("a draining node took an agent's connection")

    sent = await call(DrainAware(never, state), {"type": "websocket"}, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.accept"},
                    {"type": "websocket.close", "code": int(protocol.CloseCode.NODE_LEAVING)}]


async def test_the_drain_stops_listening_first_and_ends_once_the_requests_are_answered(settings):
    settings.PTA_DRAIN_LINGER_SECONDS = 0.0
    state, order = NodeState(), []
    state.http_in_flight = 1

    def stop_listening() -> int:
        order.append("stopped listening")
        return 1

    async def answered_later() -> None:
        await asyncio.sleep(0.1)
        order.append("answered")
        state.http_in_flight = 0

    later = asyncio.create_task(answered_later())
    assert await drain(stop_listening=stop_listening, state=state, seconds=5)
    await later
    assert order == ["stopped listening", "answered"] and state.draining


async def test_a_request_that_never_ends_is_cut_at_the_drains_bound(settings):
    settings.PTA_DRAIN_LINGER_SECONDS = 0.0
    state = NodeState()
    state.http_in_flight = 1
    assert not await drain(stop_listening=lambda: 0, state=state, seconds=0.2)
