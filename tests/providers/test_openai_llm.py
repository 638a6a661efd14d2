"""OpenAI language models through the real SDK against a fake server on loopback; the script adapter.

Expectations come from what the fake was scripted to send (the oracle), and from the wire contract in the notes:
function outputs go back as ``function_call_output`` chained with ``previous_response_id``, chat tool results as
``role: tool`` messages after the assistant's ``tool_calls``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from sipagent.agent.script import Script
from sipagent.providers.errors import (
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from sipagent.providers.llm import (
    CALL_CONTROL_TOOLS,
    END_CALL,
    LlmEvent,
    LlmStream,
    Message,
    ScriptLanguageModel,
    TextDelta,
    Tool,
    ToolBox,
    ToolCall,
    UserTurn,
)
from sipagent.providers.openai_llm import OpenAIChatModel, OpenAIResponsesModel
from tests.providers.fakes.openai_server import FakeOpenAI, FakeReply

pytestmark = pytest.mark.aio

INSTRUCTIONS = "You answer the phone for a bakery. Be brief."
HOURS_SCHEMA = {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


class HoursTool:
    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    async def __call__(self, args: Mapping[str, Any]) -> str:
        self.seen.append(args)
        return "nine to five"

    @property
    def tool(self) -> Tool:
        return Tool("opening_hours", "Opening hours for a day.", HOURS_SCHEMA, self)


async def collect(stream: LlmStream) -> list[LlmEvent]:
    try:
        return [item async for item in stream]
    finally:
        await stream.aclose()


def responses_model(fake: FakeOpenAI, *, tools: tuple[Tool, ...] = CALL_CONTROL_TOOLS, key: str = "sk-test",
                    timeout: float = 5.0) -> OpenAIResponsesModel:
    return OpenAIResponsesModel(key, base_url=fake.base_url, model="gpt-test", instructions=INSTRUCTIONS,
                                tools=tools, timeout=timeout)


async def test_text_deltas_arrive_in_order_with_instructions_model_and_tools_sent(fake: FakeOpenAI) -> None:
    deltas = ("We open ", "at nine ", "every day.")
    fake.responses.append(FakeReply(deltas=deltas))
    model = responses_model(fake)
    events = await collect(model.respond(UserTurn("when do you open", "call-1")))
    await model.aclose()

    assert events == [TextDelta(d) for d in deltas]
    (request,) = fake.posted("/v1/responses")
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.body
    assert body["instructions"] == INSTRUCTIONS and body["model"] == "gpt-test" and body["stream"] is True
    assert body["input"] == [{"role": "user", "content": "when do you open"}]
    assert "previous_response_id" not in body
    assert [t["name"] for t in body["tools"]] == ["end_call", "transfer_to_human", "send_dtmf"]
    assert all(t["type"] == "function" and t["parameters"]["type"] == "object" for t in body["tools"])


async def test_a_user_tool_runs_and_its_output_continues_the_same_turn(fake: FakeOpenAI) -> None:
    hours = HoursTool()
    fake.responses.extend([FakeReply(function_call=("opening_hours", {"day": "monday"})),
                           FakeReply(deltas=("On Monday we open ", "from nine to five."))])
    model = responses_model(fake, tools=(hours.tool,))
    events = await collect(model.respond(UserTurn("hours on monday?", "call-1")))
    await model.aclose()

    assert hours.seen == [{"day": "monday"}]
    # Tools with a handler are the model's business: only its follow-up text reaches the pipeline.
    assert events == [TextDelta("On Monday we open "), TextDelta("from nine to five.")]
    first, second = fake.posted("/v1/responses")
    assert second.body["previous_response_id"] == first.ids["response"]
    assert second.body["input"] == [{"type": "function_call_output", "call_id": first.ids["call"],
                                     "output": "nine to five"}]
    assert second.body["instructions"] == INSTRUCTIONS and second.body["tools"] == first.body["tools"]


async def test_end_call_is_yielded_and_acknowledged_to_the_model(fake: FakeOpenAI) -> None:
    fake.responses.extend([FakeReply(deltas=("Goodbye!",), function_call=("end_call", {})), FakeReply()])
    model = responses_model(fake)
    events = await collect(model.respond(UserTurn("that's all, bye", "call-1")))
    await model.aclose()

    first, second = fake.posted("/v1/responses")
    assert events == [TextDelta("Goodbye!"), ToolCall("end_call", {}, first.ids["call"])]
    assert second.body["input"] == [{"type": "function_call_output", "call_id": first.ids["call"], "output": "ok"}]


async def test_turns_of_a_call_chain_server_side_and_rewind_to_what_the_caller_heard(fake: FakeOpenAI) -> None:
    greeting = Message("assistant", "Hello, bakery here.")
    fake.responses.extend([FakeReply(deltas=("We open ", "at nine.")),
                           FakeReply(deltas=("Sourdough, rye ", "and baguettes.")),
                           FakeReply(deltas=("Yes.",)),
                           FakeReply(deltas=("Hi.",))])
    model = responses_model(fake)
    heard: list[Message] = [greeting]
    await collect(model.respond(UserTurn("when do you open", "call-1", tuple(heard))))
    heard += [Message("user", "when do you open"), Message("assistant", "We open at nine.")]
    await collect(model.respond(UserTurn("what bread do you have", "call-1", tuple(heard))))
    # Barge-in: the caller heard only the start of the second reply.
    heard += [Message("user", "what bread do you have"), Message("assistant", "Sourdough,")]
    await collect(model.respond(UserTurn("is the rye fresh", "call-1", tuple(heard))))
    await collect(model.respond(UserTurn("hello", "call-2")))
    await model.aclose()

    r1, r2, r3, r4 = fake.posted("/v1/responses")
    # First turn: the greeting the pipeline played is part of the conversation.
    assert r1.body["input"] == [{"role": "assistant", "content": greeting.text},
                                {"role": "user", "content": "when do you open"}]
    # A full hearing: chain from the last response, send only the new words.
    assert r2.body["previous_response_id"] == r1.ids["response"]
    assert r2.body["input"] == [{"role": "user", "content": "what bread do you have"}]
    # A cut-short reply: chain from before it, and replay the exchange as heard.
    assert r3.body["previous_response_id"] == r1.ids["response"]
    assert r3.body["input"] == [{"role": "user", "content": "what bread do you have"},
                                {"role": "assistant", "content": "Sourdough,"},
                                {"role": "user", "content": "is the rye fresh"}]
    # Another call starts its own chain.
    assert "previous_response_id" not in r4.body


async def test_end_call_forgets_the_chain(fake: FakeOpenAI) -> None:
    fake.responses.extend([FakeReply(deltas=("Hi.",)), FakeReply(deltas=("Hi again.",))])
    model = responses_model(fake)
    await collect(model.respond(UserTurn("hello", "call-1")))
    model.end_call("call-1")
    heard = (Message("user", "hello"), Message("assistant", "Hi."))
    await collect(model.respond(UserTurn("hello", "call-1", heard)))
    await model.aclose()
    assert "previous_response_id" not in fake.posted("/v1/responses")[1].body


async def test_chat_completions_stream_text_and_tool_calls(fake: FakeOpenAI) -> None:
    hours = HoursTool()
    fake.chat.extend([FakeReply(deltas=("Let me check. ",), function_call=("opening_hours", {"day": "sunday"})),
                      FakeReply(deltas=("Sunday ", "nine to five. Bye!"), function_call=("end_call", {})),
                      FakeReply()])
    model = OpenAIChatModel("sk-test", base_url=fake.base_url, model="llama3", instructions=INSTRUCTIONS,
                            tools=(hours.tool, END_CALL), timeout=5.0)
    heard = (Message("assistant", "Hello, bakery here."),)
    events = await collect(model.respond(UserTurn("sunday hours please", "call-1", heard)))
    await model.aclose()

    r1, r2, r3 = fake.posted("/v1/chat/completions")
    assert events == [TextDelta("Let me check. "), TextDelta("Sunday "), TextDelta("nine to five. Bye!"),
                      ToolCall("end_call", {}, r2.ids["call"])]
    assert hours.seen == [{"day": "sunday"}]
    assert r1.body["messages"] == [{"role": "system", "content": INSTRUCTIONS},
                                   {"role": "assistant", "content": "Hello, bakery here."},
                                   {"role": "user", "content": "sunday hours please"}]
    assert r1.body["stream"] is True and r1.body["model"] == "llama3"
    assert [t["function"]["name"] for t in r1.body["tools"]] == ["opening_hours", "end_call"]
    assert r2.body["messages"][3:] == [
        {"role": "assistant", "content": "Let me check. ", "tool_calls": [
            {"id": r1.ids["call"], "type": "function",
             "function": {"name": "opening_hours", "arguments": '{"day": "sunday"}'}}]},
        {"role": "tool", "tool_call_id": r1.ids["call"], "content": "nine to five"}]
    assert r3.body["messages"][-1] == {"role": "tool", "tool_call_id": r2.ids["call"], "content": "ok"}


@pytest.mark.parametrize("how", ["aclose", "cancel-from-another-task"])
async def test_cancel_mid_stream_closes_the_http_stream(fake: FakeOpenAI, how: str) -> None:
    fake.responses.append(FakeReply(deltas=("one ", "two ", "three"), delta_delay=30.0))
    model = responses_model(fake)
    stream = model.respond(UserTurn("count", "call-1"))
    if how == "aclose":
        assert await anext(stream) == TextDelta("one ")
        await stream.aclose()
    else:
        first_seen = asyncio.Event()

        async def consume() -> list[LlmEvent]:
            got = [await anext(stream)]
            first_seen.set()  # no await between this and blocking on the next delta
            got += [item async for item in stream]
            return got

        consumer = asyncio.ensure_future(consume())
        await first_seen.wait()  # the consumer is now blocked waiting for "two "
        stream.cancel()
        assert await asyncio.wait_for(consumer, 5) == [TextDelta("one ")]
    (request,) = fake.posted("/v1/responses")
    await asyncio.wait_for(request.hung_up.wait(), 5)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stream.aclose()
    await model.aclose()


async def test_a_rejected_api_key_is_a_one_line_non_retryable_error(fake: FakeOpenAI) -> None:
    model = responses_model(fake, key="sk-wrong")
    with pytest.raises(ProviderStatusError) as caught:
        await collect(model.respond(UserTurn("hello", "call-1")))
    await model.aclose()
    error = caught.value
    assert error.status == 401 and error.retryable is False
    assert "OpenAI" in str(error) and "401" in str(error) and "\n" not in str(error)
    assert "invalid_api_key" in error.body


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False)])
async def test_status_errors_say_whether_a_retry_can_help(fake: FakeOpenAI, status: int, retryable: bool) -> None:
    fake.chat.append(FakeReply(status=status, error="model is busy"))
    model = OpenAIChatModel("sk-test", base_url=fake.base_url, model="llama3", instructions=INSTRUCTIONS)
    with pytest.raises(ProviderStatusError) as caught:
        await collect(model.respond(UserTurn("hello", "call-1")))
    await model.aclose()
    assert caught.value.status == status and caught.value.retryable is retryable
    assert "model is busy" in str(caught.value)


@pytest.mark.parametrize("where", ["before-headers", "mid-stream"])
async def test_a_silent_server_is_a_timeout(fake: FakeOpenAI, where: str) -> None:
    reply = FakeReply(deltas=("one ", "two"), headers_delay=30.0) if where == "before-headers" else \
        FakeReply(deltas=("one ", "two"), delta_delay=30.0)
    fake.responses.append(reply)
    model = responses_model(fake, timeout=0.3)
    events: list[LlmEvent] = []
    with pytest.raises(ProviderTimeoutError, match="OpenAI") as caught:
        async for event in model.respond(UserTurn("hello", "call-1")):
            events.append(event)
    await model.aclose()
    assert caught.value.retryable
    assert events == ([] if where == "before-headers" else [TextDelta("one ")])


async def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIResponsesModel("sk-test", base_url=f"http://127.0.0.1:{port}/v1", model="m", instructions="i")
    with pytest.raises(ProviderConnectionError) as caught:
        await collect(model.respond(UserTurn("hello", "call-1")))
    await model.aclose()
    assert caught.value.retryable and "cannot reach OpenAI" in str(caught.value)


@pytest.mark.parametrize(("code", "retryable"), [("server_error", True), ("invalid_prompt", False)])
async def test_a_failed_response_is_a_provider_error(fake: FakeOpenAI, code: str, retryable: bool) -> None:
    fake.responses.append(FakeReply(deltas=("Let me ",), failure=(code, "the model gave up")))
    model = responses_model(fake)
    events: list[LlmEvent] = []
    with pytest.raises(ProviderError, match="OpenAI .*the model gave up") as caught:
        async for event in model.respond(UserTurn("hello", "call-1")):
            events.append(event)
    await model.aclose()
    assert events == [TextDelta("Let me ")] and caught.value.retryable is retryable


async def test_the_toolbox_turns_bad_calls_into_errors_the_model_can_read() -> None:
    def broken(args: Mapping[str, Any]) -> str:
        raise RuntimeError("database down")

    box = ToolBox([Tool("broken", "fails", handler=broken), Tool("lookup", "returns data", handler=lambda a: {"n": 2}),
                   END_CALL])
    assert await box.run("nope", "{}", "c1") == (None, "error: there is no tool named 'nope'")
    assert await box.run("lookup", "[1]", "c2") == (None, "error: the arguments must be a JSON object")
    assert await box.run("lookup", "{oops", "c3") == (None, "error: the arguments are not valid JSON")
    assert await box.run("broken", "{}", "c4") == (None, "error: database down")
    assert await box.run("lookup", "", "c5") == (None, '{"n": 2}')
    assert await box.run("end_call", '{"reason": "done"}', "c6") == (ToolCall("end_call", {"reason": "done"}, "c6"),
                                                                     "ok")
    with pytest.raises(ValueError, match="share a name"):
        ToolBox([END_CALL, END_CALL])


def test_a_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="OpenAI"):
        OpenAIResponsesModel(None, base_url="http://127.0.0.1:9/v1", model="m", instructions="i")


SCRIPT = {
    "greeting": "Hello.", "fallback": "Sorry, I did not get that.", "reprompt": "Are you there?",
    "goodbye": "Goodbye.", "no_operator": "Nobody is free.", "transfer": "Transferring you.",
    "intents": [
        {"name": "hours", "phrases": ["opening hours"], "answer": "We open at nine."},
        {"name": "bye", "phrases": ["goodbye"], "answer": "Thanks for calling, goodbye.", "action": "hangup"},
        {"name": "human", "phrases": ["a human"], "answer": "One moment.", "action": "transfer"},
    ],
}


@pytest.mark.parametrize(("said", "answer", "tool"), [
    ("what are your opening hours", "We open at nine.", None),
    ("ok goodbye", "Thanks for calling, goodbye.", "end_call"),
    ("let me talk to a human", "One moment.", "transfer_to_human"),
    ("purple monkey dishwasher", "Sorry, I did not get that.", None),
])
async def test_the_script_answers_through_the_same_interface(said: str, answer: str, tool: str | None) -> None:
    model = ScriptLanguageModel(Script.from_dict(SCRIPT))
    events = await collect(model.respond(UserTurn(said, "call-1")))
    assert events[0] == TextDelta(answer)
    assert [(e.name, dict(e.arguments)) for e in events[1:] if isinstance(e, ToolCall)] == \
        ([(tool, {})] if tool else [])
    assert len(events) == (2 if tool else 1)
