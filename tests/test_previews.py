"""Prompt and answer previews: what a list shows of each exchange without reading its bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.gateway.exchange import Exchange, to_row
from proxy.gateway.headers import HeliconeOptions
from proxy.gateway.previews import PREVIEW_CHARS, answer_preview, prompt_preview


@pytest.mark.parametrize(
    ("body", "preview"),
    [
        (
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "  what\n\tabout   this? "},
                ]
            },
            "what about this?",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "describe"},
                            {"type": "image_url", "image_url": {"url": "http://x/a.png"}},
                            {"type": "text", "text": "this picture"},
                        ],
                    }
                ]
            },
            "describe this picture",
        ),
        ({"prompt": "complete me"}, "complete me"),
        ({"prompt": ["one", "two"]}, "one two"),
        ({"input": "embed this"}, "embed this"),
        ({"input": [101, 102]}, None),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}]},
            "hi there",
        ),
        ({"messages": [{"role": "system", "content": "only system"}]}, None),
        ("not an object", None),
    ],
)
def test_prompt_preview(body: Any, preview: str | None) -> None:
    assert prompt_preview(body) == preview


@pytest.mark.parametrize(
    ("body", "preview"),
    [
        (
            {"choices": [{"message": {"role": "assistant", "content": "Hello\n\nworld"}}]},
            "Hello world",
        ),
        (
            {
                "choices": [
                    {
                        "message": {
                            "content": None,
                            "tool_calls": [
                                {
                                    "function": {
                                        "name": "get_weather",
                                        "arguments": '{"city":"Paris"}',
                                    }
                                },
                                {"function": {"name": "get_time", "arguments": "{}"}},
                            ],
                        }
                    }
                ]
            },
            '→ get_weather({"city":"Paris"}), → get_time({})',
        ),
        ({"choices": [{"text": "completed text"}]}, "completed text"),
        (
            {
                "output": [
                    {"type": "reasoning"},
                    {"type": "message", "content": [{"type": "output_text", "text": "answer"}]},
                ]
            },
            "answer",
        ),
        (
            {"output": [{"type": "function_call", "name": "lookup", "arguments": "{}"}]},
            "→ lookup({})",
        ),
        ({"data": [{"embedding": [0.1]}]}, None),
        ({"choices": []}, None),
    ],
)
def test_answer_preview(body: Any, preview: str | None) -> None:
    assert answer_preview(body) == preview


def test_a_long_text_is_cut_to_the_preview_length() -> None:
    preview = prompt_preview({"prompt": "word " * 500})
    assert preview is not None and len(preview) == PREVIEW_CHARS and preview.endswith("…")


def _exchange(helicone: HeliconeOptions | None = None) -> Exchange:
    request = {"model": "m", "messages": [{"role": "user", "content": "<b>secret</b> question"}]}
    reply = {"model": "m", "choices": [{"index": 0, "message": {"content": "the answer"}}]}
    return Exchange(
        id="p1",
        started_at=0,
        method="POST",
        path="/v1/chat/completions",
        helicone=helicone,
        request_body=orjson.dumps(request),
        request_content_type="application/json",
        response_content_type="application/json",
        response_chunks=[orjson.dumps(reply)],
        response_size=len(orjson.dumps(reply)),
    )


def test_the_row_carries_both_previews() -> None:
    row = to_row(_exchange())
    assert (row.prompt_preview, row.answer_preview) == ("<b>secret</b> question", "the answer")


def test_an_omitted_body_leaves_no_preview() -> None:
    options = HeliconeOptions(request_id="p1", omit_request=True, omit_response=True)
    row = to_row(_exchange(options))
    assert row.request_body is None and row.response_body is None
    assert (row.prompt_preview, row.answer_preview) == (None, None)
