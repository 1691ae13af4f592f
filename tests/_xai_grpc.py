"""A scripted xAI gRPC server on 127.0.0.1, built from the service stubs inside the xai-sdk.

It implements what the SDK's ``chat.create(...).sample()`` (``Chat/GetCompletion``), ``.stream()``
(``GetCompletionChunk``) and ``.defer()`` (``StartDeferredCompletion`` then
``GetDeferredCompletion``) call. Each method answers from its own script: a list of
:class:`Fail` (abort with a gRPC status code and details) and ``PENDING`` (a deferred poll that is
not ready); when a script runs out, the call succeeds. Every call is counted, so a test can assert
what reached the server, attempts made by the SDK's own channel retries included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from xai_sdk.proto import chat_pb2, chat_pb2_grpc, deferred_pb2

API_KEY: Final = "xai-GRPCCANARY0123456789abcdef"
REPLY: Final = "Hello from the fake xAI gRPC server"
REQUEST_ID: Final = "0d1f2e3c-4b5a-6978-8a9b-acbdcedf0123"
#: What xAI answers when a team's credits are spent (``shared/xai-api.md``).
CREDITS_SPENT: Final = (
    "Your team 0123 has either used all available credits or reached its monthly spending limit."
)
PENDING: Final = "PENDING"


@dataclass(frozen=True)
class Fail:
    """Abort the call with this status code and details."""

    code: grpc.StatusCode
    details: str = ""


Step = Fail | str


@dataclass
class Script:
    """Scripted answers per method, and every call seen (method names, in order)."""

    steps: dict[str, list[Step]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, context: Any) -> Step | None:
        metadata = dict(context.invocation_metadata())
        with self.lock:
            self.calls.append(method)
            self.keys.append(str(metadata.get("authorization", "")))
            queue = self.steps.get(method)
            return queue.pop(0) if queue else None

    def count(self, method: str) -> int:
        with self.lock:
            return self.calls.count(method)


def _completion() -> chat_pb2.GetChatCompletionResponse:
    message = chat_pb2.CompletionMessage(content=REPLY, role=chat_pb2.MessageRole.ROLE_ASSISTANT)
    return chat_pb2.GetChatCompletionResponse(
        id="resp-1", model="grok-4", outputs=[chat_pb2.CompletionOutput(index=0, message=message)]
    )


class _Chat(chat_pb2_grpc.ChatServicer):  # type: ignore[misc]
    def __init__(self, script: Script) -> None:
        self.script = script

    def _fail(self, step: Step | None, context: Any) -> None:
        if isinstance(step, Fail):
            context.abort(step.code, step.details)

    def GetCompletion(self, request: Any, context: Any) -> Any:
        self._fail(self.script.take("GetCompletion", context), context)
        return _completion()

    def GetCompletionChunk(self, request: Any, context: Any) -> Iterator[Any]:
        self._fail(self.script.take("GetCompletionChunk", context), context)
        for piece in REPLY.split(" "):
            delta = chat_pb2.Delta(content=piece + " ", role=chat_pb2.MessageRole.ROLE_ASSISTANT)
            output = chat_pb2.CompletionOutputChunk(index=0, delta=delta)
            yield chat_pb2.GetChatCompletionChunk(id="resp-1", model="grok-4", outputs=[output])

    def StartDeferredCompletion(self, request: Any, context: Any) -> Any:
        self._fail(self.script.take("StartDeferredCompletion", context), context)
        return deferred_pb2.StartDeferredResponse(request_id=REQUEST_ID)

    def GetDeferredCompletion(self, request: Any, context: Any) -> Any:
        step = self.script.take("GetDeferredCompletion", context)
        self._fail(step, context)
        if request.request_id != REQUEST_ID:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown request id {request.request_id}")
        if step == PENDING:
            pending = deferred_pb2.DeferredStatus.PENDING
            return chat_pb2.GetDeferredCompletionResponse(status=pending)
        return chat_pb2.GetDeferredCompletionResponse(
            status=deferred_pb2.DeferredStatus.DONE, response=_completion()
        )


class FakeXaiServer:
    """``with FakeXaiServer() as server:`` serves on ``server.address`` (127.0.0.1, a free port)."""

    def __init__(self) -> None:
        self.script = Script()
        self._pool = futures.ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._pool)
        chat_pb2_grpc.add_ChatServicer_to_server(_Chat(self.script), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeXaiServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()
        self._pool.shutdown(wait=True)

    def queue(self, method: str, *steps: Step) -> None:
        """Queue ``steps`` for ``method`` (after any already queued)."""
        with self.script.lock:
            self.script.steps.setdefault(method, []).extend(steps)

    def count(self, method: str) -> int:
        return self.script.count(method)
