"""The scripted model of supportbot.testing, through the real openai SDK (sync here; the agent and
conversation tests drive it async): what a test scripts is what the SDK sees."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from supportbot.testing import ScriptedModel, error, reply, tool_call

HI = [{"role": "user", "content": "hi"}]


def sdk(model: ScriptedModel, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://service.test/v1",
        api_key="k",
        http_client=httpx.Client(transport=model),
        max_retries=max_retries,
    )


def test_a_non_streamed_reply_carries_text_tool_calls_finish_and_usage():
    model = ScriptedModel(reply("Let me check.", tool_call("check_order_status", {"order_id": "48291"}), usage=(40, 9)))
    r = sdk(model).chat.completions.create(model="m", messages=HI)
    choice = r.choices[0]
    assert choice.message.content == "Let me check." and choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "check_order_status" and json.loads(call.function.arguments) == {"order_id": "48291"}
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (40, 9, 49)
    assert model.chat_bodies == [{"model": "m", "messages": HI}]


def test_a_streamed_reply_is_split_into_deltas_with_usage_last():
    model = ScriptedModel(reply("The parcel is on its way.", pieces=5, finish_reason="length", usage=(12, 6)))
    chunks = list(
        sdk(model).chat.completions.create(model="m", messages=HI, stream=True, stream_options={"include_usage": True})
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 5 and "".join(deltas) == "The parcel is on its way."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


def test_errors_have_openai_bodies_and_retryable_ones_are_retried_by_the_sdk():
    model = ScriptedModel(error(503), error(429), reply("ok"), error(400, "bad field", param="messages"))
    client = sdk(model, max_retries=2)
    assert client.chat.completions.create(model="m", messages=HI).choices[0].message.content == "ok"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=HI)
    assert err.value.body == {
        "message": "bad field",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    assert len(model.chat_bodies) == 4  # 503, 429, the answer, and the 400 once: a 400 is not retried


def test_a_request_past_the_script_gets_a_500_that_says_so_and_is_not_retried():
    model = ScriptedModel(reply("only one"))
    client = sdk(model, max_retries=2)
    client.chat.completions.create(model="m", messages=HI)
    with pytest.raises(openai.InternalServerError, match="no step left for chat request #2"):
        client.chat.completions.create(model="m", messages=HI)
    assert model.unexpected == 1 and len(model.chat_bodies) == 2


def test_models_a_function_step_and_repeat_last():
    model = ScriptedModel(
        lambda body: reply(f"You sent {len(body['messages'])} message(s) to {body['model']}."),
        reply("again"),
        models=["llama-3.3-70b", "qwen-3-32b"],
        repeat_last=True,
    )
    client = sdk(model)
    assert [m.id for m in client.models.list()] == ["llama-3.3-70b", "qwen-3-32b"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("glm-5")
    first = client.chat.completions.create(model="qwen-3-32b", messages=HI).choices[0].message.content
    assert first == "You sent 1 message(s) to qwen-3-32b."
    again = [client.chat.completions.create(model="m", messages=HI).choices[0].message.content for _ in range(3)]
    assert again == ["again"] * 3 and model.remaining == 1
    assert [r.path for r in model.requests[:2]] == ["/v1/models", "/v1/models/glm-5"]
