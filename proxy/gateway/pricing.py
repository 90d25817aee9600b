"""The price table: USD per million tokens per model, kept as package data, overridable."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from proxy.errors import PricingError
from proxy.gateway.sse import Summary

PRICES_FILE = Path(__file__).with_name("prices.json")
DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; cached prompt tokens cost `cached_input` (or `input` when None)."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt: int | None, completion: int | None, cached: int | None) -> float | None:
        """The call's cost, or None when the usage is unknown (never 0 by guess)."""
        if prompt is None and completion is None:
            return None
        cached = min(cached or 0, prompt or 0)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (
            ((prompt or 0) - cached) * self.input
            + cached * cached_rate
            + (completion or 0) * self.output
        )
        return round(total / PER_TOKENS, 12)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PricingError(f"{where} must be a non-negative number")
    return float(value)


def parse_prices(data: Any, origin: str) -> dict[str, Price]:
    """`{"models": {name: {"input", "output", "cached_input"?}}}` as Price objects."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise PricingError(f"{origin}: expected an object with a 'models' object")
    prices = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or set(entry) - {"input", "output", "cached_input"}:
            raise PricingError(f"{origin}: {name}: expected input, output and cached_input")
        cached = entry.get("cached_input")
        prices[name.lower()] = Price(
            input=_number(entry.get("input"), f"{origin}: {name}.input"),
            output=_number(entry.get("output"), f"{origin}: {name}.output"),
            cached_input=None if cached is None else _number(cached, f"{origin}: {name}.cached"),
        )
    return prices


def read_prices(path: Path) -> dict[str, Price]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise PricingError(f"cannot read price file {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise PricingError(f"price file {path} is not valid JSON: {exc}") from exc
    return parse_prices(data, str(path))


def parse_override(text: str) -> tuple[str, Price]:
    """`MODEL=INPUT/OUTPUT[/CACHED_INPUT]`, USD per million tokens."""
    name, sep, rates = text.partition("=")
    parts = rates.split("/")
    if not sep or not name.strip() or len(parts) not in (2, 3):
        raise PricingError(f"price override {text!r}: expected MODEL=INPUT/OUTPUT[/CACHED_INPUT]")
    try:
        numbers = [float(p) for p in parts]
    except ValueError as exc:
        raise PricingError(f"price override {text!r}: rates must be numbers") from exc
    if any(n < 0 or n != n or n == float("inf") for n in numbers):
        raise PricingError(f"price override {text!r}: rates must be finite and non-negative")
    cached = numbers[2] if len(numbers) == 3 else None
    return name.strip().lower(), Price(input=numbers[0], output=numbers[1], cached_input=cached)


class PriceTable:
    """Looks a model up (exact, fine-tune base, dated snapshot) and prices a call's usage."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = {name.lower(): price for name, price in prices.items()}

    @classmethod
    def load(cls, file: str = "", overrides: Iterable[str] = ()) -> PriceTable:
        """Package prices, then a price file, then `MODEL=...` overrides; later ones win."""
        prices = read_prices(PRICES_FILE)
        if file:
            prices.update(read_prices(Path(file)))
        prices.update(parse_override(text) for text in overrides)
        return cls(prices)

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.strip().lower().removeprefix("openai/")
        if name.startswith("ft:"):
            # ft:BASE:ORG:SUFFIX:ID is billed at the fine-tuned rate of BASE.
            name = "ft:" + name[3:].split(":", 1)[0]
        price = self.prices.get(name)
        if price is None:
            price = self.prices.get(DATED_SUFFIX.sub("", name))
        return price

    def __call__(self, model: str | None, summary: Summary) -> float | None:
        """cost_usd for a logged call: None for unpriced models or unknown usage."""
        price = self.lookup(model)
        if price is None:
            return None
        return price.cost(summary.prompt_tokens, summary.completion_tokens, summary.cached_tokens)
