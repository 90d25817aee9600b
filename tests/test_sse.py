"""SSE assembly: chat chunks, tool-call deltas, Responses API events, usage filter."""

from __future__ import annotations

import orjson

from proxy.gateway.sse import UsageChunkFilter, assemble, iter_events, summarize


def sse(*payloads: object) -> bytes:
    out = b""
    for payload in payloads:
        data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        out += f"data: {data}\n\n".encode()
    return out


BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}


def chunk(delta: dict[str, object], reason: str | None = None, index: int = 0) -> dict[str, object]:
    return {**BASE, "choices": [{"index": index, "delta": delta, "finish_reason": reason}]}


def test_chat_stream_assembles_content_usage_and_finish_reason() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        {
            **BASE,
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        "[DONE]",
    )
    result = assemble(raw)
    assert result.done and result.malformed == 0
    assert result.body is not None
    assert result.body["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    summary = summarize(result.body)
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (3, 2, 5)
    assert summary.finish_reason == "stop"
    assert summary.model == "gpt-4o"


def test_parallel_tool_call_deltas_are_merged_by_index() -> None:
    raw = sse(
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get", "arguments": ""},
                    },
                ],
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "put", "arguments": '{"b'},
                    },
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '":2}'}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    body = assemble(raw).body
    assert body is not None
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_a", "get", '{"a":1}'),
        ("call_b", "put", '{"b":2}'),
    ]


def test_events_split_across_crlf_and_multiline_data() -> None:
    raw = b'data: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]\r\n\r\n'
    assert list(iter_events(raw)) == ['{"a":\n1}', "[DONE]"]


def test_truncated_stream_is_not_done_and_malformed_events_counted() -> None:
    raw = sse(chunk({"content": "par"}), "{broken") + b'data: {"cut'
    result = assemble(raw)
    assert not result.done
    assert result.malformed == 2
    assert result.body is not None
    assert result.body["choices"][0]["message"]["content"] == "par"


def test_responses_stream_uses_the_completed_response() -> None:
    final = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
        "usage": {
            "input_tokens": 4,
            "output_tokens": 1,
            "total_tokens": 5,
            "input_tokens_details": {"cached_tokens": 2},
        },
    }
    raw = sse(
        {"type": "response.created", "response": {**final, "status": "in_progress", "output": []}},
        {"type": "response.output_text.delta", "delta": "Hi"},
        {"type": "response.completed", "response": final},
    )
    result = assemble(raw)
    assert result.done
    assert result.body == final
    summary = summarize(result.body)
    assert (summary.prompt_tokens, summary.completion_tokens, summary.cached_tokens) == (4, 1, 2)
    assert summary.finish_reason == "completed"


def test_responses_stream_cut_keeps_the_text_so_far() -> None:
    raw = sse(
        {"type": "response.created", "response": {"id": "r", "object": "response", "output": []}},
        {"type": "response.output_text.delta", "delta": "Par"},
        {"type": "response.output_text.delta", "delta": "tial"},
    )
    result = assemble(raw)
    assert not result.done
    assert result.body is not None
    assert result.body["output"][0]["content"][0]["text"] == "Partial"


def test_unknown_usage_is_none_not_zero() -> None:
    summary = summarize({"model": "m", "choices": [{"finish_reason": "stop"}]})
    assert summary.prompt_tokens is None and summary.total_tokens is None


def test_usage_filter_drops_only_the_usage_chunk_even_when_split() -> None:
    usage = {
        **BASE,
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    raw = sse(chunk({"content": "x"}), chunk({}, "stop"), usage, "[DONE]")
    expected = sse(chunk({"content": "x"}), chunk({}, "stop"), "[DONE]")
    for size in (1, 7, 64, len(raw)):
        filt = UsageChunkFilter()
        out = b"".join(filt.feed(raw[i : i + size]) for i in range(0, len(raw), size))
        assert out + filt.flush() == expected
