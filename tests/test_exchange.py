"""Turning a finished exchange into a stored row."""

from __future__ import annotations

import orjson
import pytest

from proxy.gateway.exchange import Exchange, to_row


def test_undecodable_header_bytes_are_stored_replaced() -> None:
    raw = b"\xff\xfe ok".decode("utf-8", "surrogateescape")
    ex = Exchange(
        id="x", started_at=0, method="GET", path="/v1/models", request_headers={"x-a": raw}
    )
    row = to_row(ex)
    assert row.request_headers is not None
    assert orjson.loads(row.request_headers) == {"x-a": "\ufffd\ufffd ok"}
    assert row.created_at == "1970-01-01T00:00:00.000Z"


def test_binary_response_is_measured_not_stored() -> None:
    ex = Exchange(
        id="x",
        started_at=0,
        method="POST",
        path="/v1/audio/speech",
        request_body=b'{"model": "tts-1", "input": "hi"}',
        request_content_type="application/json",
        response_content_type="audio/mpeg",
        response_chunks=[b"ID3\x00\x01", b"\xff\xfb"],
    )
    row = to_row(ex)
    assert row.response_body is None
    assert row.response_bytes == 7
    assert row.request_model == "tts-1" and row.model == "tts-1"


def test_stream_without_done_or_finish_reason_is_incomplete() -> None:
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "par"}}]}
    ex = Exchange(
        id="x",
        started_at=0,
        method="POST",
        path="/v1/chat/completions",
        is_stream=True,
        response_content_type="text/event-stream",
        response_chunks=[b"data: " + orjson.dumps(chunk) + b"\n\n"],
    )
    row = to_row(ex)
    assert row.outcome == "stream_incomplete"
    assert row.response_body is not None
    assert orjson.loads(row.response_body)["choices"][0]["message"]["content"] == "par"


def test_price_callback_sets_cost() -> None:
    body = {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    ex = Exchange(
        id="x",
        started_at=0,
        method="POST",
        path="/v1/chat/completions",
        response_content_type="application/json",
        response_chunks=[orjson.dumps(body)],
    )
    row = to_row(ex, price=lambda model, s: 0.5 if model == "gpt-4o" else None)
    assert row.cost_usd == 0.5
    assert row.total_tokens == 15


@pytest.mark.parametrize("char", ["é", "€", "🙂"])
def test_bodies_over_the_bound_are_stored_cut_at_a_character_and_marked(char: str) -> None:
    text = char * 3000  # several bytes each: a cut at 4097 bytes may fall inside one
    body = orjson.dumps({"model": "gpt-4o", "input": text})
    ex = Exchange(
        id="x",
        started_at=0,
        method="POST",
        path="/v1/embeddings",
        request_body=body,
        request_content_type="application/json",
        response_content_type="application/json",
        capture_bytes=4097,
    )
    for at in range(0, len(body), 1000):
        ex.capture(body[at : at + 1000])
    row = to_row(ex)
    assert row.request_bytes == len(body) and row.response_bytes == len(body)
    assert row.request_body is not None and row.response_body is not None
    assert body.decode().startswith(row.request_body)
    assert body.decode().startswith(row.response_body)
    assert 4090 < len(row.request_body.encode()) <= 4097
    assert 4090 < len(row.response_body.encode()) <= 4097
    assert row.error is not None
    kept = len(row.request_body.encode())
    assert f"request body truncated for the log: {kept} of {len(body)} bytes" in row.error
    assert "response body truncated" in row.error
    assert row.request_model is None and row.prompt_tokens is None


def _sse(*events: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("cap", [1 << 20, 200], ids=["kept-whole", "outgrows-the-cap"])
def test_a_stream_is_folded_the_same_whether_it_fits_the_cap_or_not(cap: int) -> None:
    words = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("Hel", "lo", "!")]
    first = {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}
    raw = _sse(first, *words, last, usage)
    ex = Exchange(
        id="x",
        started_at=0,
        method="POST",
        path="/v1/chat/completions",
        is_stream=True,
        response_content_type="text/event-stream",
        capture_bytes=cap,
    )
    for at in range(0, len(raw), 37):  # cut inside lines and events
        ex.capture(raw[at : at + 37])
    # Only a stream that outgrows what is kept is folded while it arrives.
    assert (ex.stream is None) == (len(raw) <= cap)
    row = to_row(ex)
    assert row.prompt_tokens == 4 and row.completion_tokens == 3
    assert row.finish_reason == "stop" and row.outcome == "ok"
    assert row.response_body is not None
    assert orjson.loads(row.response_body)["choices"][0]["message"]["content"] == "Hello!"
