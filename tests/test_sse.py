"""SSE assembly: chat chunks, tool-call deltas, Responses API events, framing, usage filter."""

from __future__ import annotations

import time

import orjson
import pytest

from proxy.gateway.sse import StreamAssembler, UsageChunkFilter, assemble, iter_events, summarize


def sse(*payloads: object) -> bytes:
    events = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        events.append(f"data: {data}\n\n".encode())
    return b"".join(events)


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


def content_stream(deltas: int, size: int = 100) -> bytes:
    piece = "x" * (size - 1) + " "
    return sse(*(chunk({"content": piece}) for _ in range(deltas)), chunk({}, "stop"), "[DONE]")


def best_of_three(raw: bytes, step: int) -> float:
    """Seconds to fold `raw` arriving `step` bytes at a time, the best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        assembler = StreamAssembler(len(raw))
        for at in range(0, len(raw), step):
            assembler.feed(raw[at : at + step])
        assembler.result()
        best = min(best, time.perf_counter() - started)
    return best


def test_assembly_time_grows_linearly_with_the_stream() -> None:
    """Eight times the deltas cost about eight times as much, not sixty-four (quadratic)."""
    small, large = content_stream(2_000), content_stream(16_000)
    ratio = best_of_three(large, 4096) / best_of_three(small, 4096)
    assert ratio < 24, f"8x the stream took {ratio:.1f}x as long"
    result = assemble(large)
    assert result.body is not None
    assert len(result.body["choices"][0]["message"]["content"]) == 16_000 * 100


def test_one_long_event_in_many_chunks_is_folded_whole() -> None:
    event = sse(chunk({"content": "y" * 2_000_000}), chunk({}, "stop"), "[DONE]")
    assembler = StreamAssembler(4_000_000)
    for at in range(0, len(event), 1024):
        assembler.feed(event[at : at + 1024])
    result = assembler.result()
    assert result.done and result.events == 2 and not result.truncated
    assert result.body is not None
    assert result.body["choices"][0]["message"]["content"] == "y" * 2_000_000


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("crlf lines, lf blank", b'data: {"a": 1}\r\n\ndata: {"b": 2}\r\n\n'),
        ("lf lines, crlf blank", b'data: {"a": 1}\n\r\ndata: {"b": 2}\n\r\n'),
        ("cr only", b'data: {"a": 1}\r\rdata: {"b": 2}\r\r'),
        ("leading BOM", b'\xef\xbb\xbfdata: {"a": 1}\n\ndata: {"b": 2}\n\n'),
        ("comments and fields", b': ping\nevent: x\ndata: {"a": 1}\nid: 1\n\ndata: {"b": 2}\n\n'),
    ],
)
def test_every_sse_line_ending_and_a_bom_frame_the_same_events(name: str, raw: bytes) -> None:
    for step in (1, 2, 3, len(raw)):
        assembler = StreamAssembler(1 << 20)
        for at in range(0, len(raw), step):
            assembler.feed(raw[at : at + step])
        assert assembler.result().events == 2, (name, step)
    assert list(iter_events(raw)) == ['{"a": 1}', '{"b": 2}'], name


def test_crlf_lf_framed_stream_keeps_content_and_usage() -> None:
    usage = {**BASE, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    raw = b"\xef\xbb\xbf" + sse(chunk({"content": "Hi"}), chunk({}, "stop"), usage, "[DONE]")
    result = assemble(raw.replace(b"\n\n", b"\r\n\n"))
    assert result.done and result.body is not None
    assert result.body["choices"][0]["message"]["content"] == "Hi"
    assert summarize(result.body).prompt_tokens == 3


@pytest.mark.parametrize("index", [3_000_000, -1, "0", 1.5, True, [0]])
def test_a_wild_tool_call_index_is_malformed_not_a_huge_list(index: object) -> None:
    call = {"index": index, "id": "call_x", "function": {"name": "f", "arguments": "{}"}}
    raw = sse(chunk({"content": "ok"}), chunk({"tool_calls": [call]}), chunk({}, "stop"), "[DONE]")
    result = assemble(raw)
    assert result.malformed == 1
    assert result.body is not None
    assert len(orjson.dumps(result.body)) < 1000
    assert result.body["choices"][0]["message"]["content"] == "ok"


def test_a_wild_choice_index_is_malformed() -> None:
    raw = sse(chunk({"content": "a"}, index=10**9), chunk({"content": "b"}), "[DONE]")
    result = assemble(raw)
    assert result.malformed == 1
    assert result.body is not None
    assert [c["message"]["content"] for c in result.body["choices"]] == ["b"]


def test_text_beyond_the_bound_is_dropped_and_reported() -> None:
    raw = content_stream(100, size=1000)
    result = assemble(raw, max_bytes=10_000)
    assert result.truncated and result.done
    assert result.body is not None
    assert len(result.body["choices"][0]["message"]["content"]) == 10_000


def test_usage_filter_handles_crlf_lf_framing_and_passes_large_events_through() -> None:
    usage = {**BASE, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    raw = sse(chunk({"content": "x"}), usage, "[DONE]").replace(b"\n\n", b"\r\n\n")
    filt = UsageChunkFilter()
    out = b"".join(filt.feed(raw[i : i + 5]) for i in range(0, len(raw), 5)) + filt.flush()
    assert out == sse(chunk({"content": "x"}), "[DONE]").replace(b"\n\n", b"\r\n\n")
    big = sse(chunk({"content": "z" * 200_000}))
    filt = UsageChunkFilter()
    first = filt.feed(big[:150_000])
    assert len(first) >= 150_000 - 64 * 1024
    assert first + filt.feed(big[150_000:]) + filt.flush() == big
