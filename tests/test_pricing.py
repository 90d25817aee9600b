"""The price table: lookups, cost arithmetic, overrides, and cost_usd on logged rows."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.config import load_settings
from proxy.errors import ConfigError, PricingError
from proxy.gateway.pricing import PRICES_FILE, Price, PriceTable, parse_override
from proxy.gateway.sse import Summary
from tests.helpers import ProxyFactory, stored

TABLE = PriceTable.load()


def usage(prompt: int | None, completion: int | None, cached: int | None = None) -> Summary:
    return Summary(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


@pytest.mark.parametrize(
    ("model", "summary", "cost"),
    [
        # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
        ("gpt-4o-mini", usage(1000, 500), (1000 * 0.15 + 500 * 0.60) / 1e6),
        ("gpt-4o-mini", usage(1000, 500, 400), (600 * 0.15 + 400 * 0.075 + 500 * 0.60) / 1e6),
        ("gpt-4o-mini-2024-07-18", usage(1000, 0), 1000 * 0.15 / 1e6),
        ("GPT-4o-Mini", usage(1000, 0), 1000 * 0.15 / 1e6),
        ("openai/gpt-4.1", usage(1_000_000, 1_000_000), 2.0 + 8.0),
        # A dated snapshot with its own price wins over its alias.
        ("gpt-4o-2024-05-13", usage(1_000_000, 0), 5.0),
        ("gpt-4o-2024-08-06", usage(1_000_000, 0), 2.5),
        # No cached price: cached tokens cost the input price.
        ("gpt-4-turbo", usage(1000, 0, 1000), 1000 * 10.0 / 1e6),
        # A fine-tuned model costs its base model's fine-tuned rate.
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", usage(1_000_000, 1_000_000), 0.3 + 1.2),
        ("text-embedding-3-small", usage(1_000_000, None), 0.02),
        ("o4-mini", usage(2000, 1000, 1000), (1000 * 1.1 + 1000 * 0.275 + 1000 * 4.4) / 1e6),
    ],
)
def test_known_models_are_priced(model: str, summary: Summary, cost: float) -> None:
    assert TABLE(model, summary) == pytest.approx(cost, rel=1e-9)


@pytest.mark.parametrize(
    ("model", "summary"),
    [
        ("my-local-llama", usage(100, 100)),
        ("gpt-4o-mini-tts", usage(100, 100)),
        ("ft:unknown-base:acme::x", usage(100, 100)),
        ("", usage(100, 100)),
        (None, usage(100, 100)),
        ("gpt-4o-mini", usage(None, None)),
    ],
)
def test_unpriced_models_and_unknown_usage_cost_none(model: str | None, summary: Summary) -> None:
    assert TABLE(model, summary) is None


def test_package_prices_are_sane() -> None:
    data = orjson.loads(PRICES_FILE.read_bytes())
    assert data["unit"] == "USD per 1M tokens"
    for name, price in TABLE.prices.items():
        assert name == name.lower()
        assert price.input >= 0 and price.output >= 0
        assert price.cached_input is None or price.cached_input <= price.input, name
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini", "gpt-5"):
        assert TABLE.lookup(model) is not None, model


def test_file_then_overrides_win(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_bytes(
        orjson.dumps(
            {
                "models": {
                    "gpt-4o-mini": {"input": 1, "output": 2},
                    "house-model": {"input": 3, "output": 4},
                }
            }
        )
    )
    table = PriceTable.load(str(prices), ["house-model=5/6/0.5"])
    assert table.lookup("gpt-4o-mini") == Price(1.0, 2.0, None)
    assert table.lookup("house-model") == Price(5.0, 6.0, 0.5)
    assert table.lookup("gpt-4o") == TABLE.lookup("gpt-4o")


@pytest.mark.parametrize(
    "text", ["gpt-4o", "=1/2", "m=1", "m=1/2/3/4", "m=a/b", "m=-1/2", "m=nan/1", "m=inf/1"]
)
def test_bad_overrides_are_refused(text: str) -> None:
    with pytest.raises(PricingError):
        parse_override(text)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "'models' object"),
        (b'{"models": {"m": {"input": 1}}}', "m.output"),
        (b'{"models": {"m": {"input": 1, "output": 2, "extra": 3}}}', "expected input"),
        (b'{"models": {"m": {"input": true, "output": 2}}}', "m.input"),
    ],
)
def test_bad_price_files_are_config_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"pricing\.file") as caught:
        load_settings(None, {}, {"RELAYLOG_PRICING_FILE": str(path)})
    assert message in str(caught.value)


def test_overrides_come_from_the_environment() -> None:
    settings = load_settings(None, {}, {"RELAYLOG_PRICING_OVERRIDES": "a=1/2, b=3/4/1"})
    assert settings.pricing.overrides == ["a=1/2", "b=3/4/1"]
    with pytest.raises(ConfigError, match=r"pricing\.overrides"):
        load_settings(None, {}, {"RELAYLOG_PRICING_OVERRIDES": "a=1"})


async def test_logged_rows_carry_cost_usd(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(pricing={"overrides": ["house-model=10/20"]})
    costs = {}
    for model in ("gpt-4o-mini", "house-model", "my-local-llama"):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "price me"}]},
        )
        assert response.status == 200
        row = await stored(client.app, response.headers["helicone-id"])
        costs[model] = (row["cost_usd"], row["prompt_tokens"], row["completion_tokens"])
    cost, prompt, completion = costs["gpt-4o-mini"]
    assert cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 1e6)
    cost, prompt, completion = costs["house-model"]
    assert cost == pytest.approx((prompt * 10 + completion * 20) / 1e6)
    assert costs["my-local-llama"][0] is None
