"""The price table the user owns: named offers with prices per resource unit, read from YAML.

opsnb writes no price in code. A table (``examples/prices.yaml`` is the shipped example) states
its ``date``, its ``currency`` and, per offer, a price for some of the units in :data:`UNITS`
and the ``source`` of its figures. A unit an offer leaves out is "not offered there". Every
error names the file and the key, the value, what was expected and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from opsnb import config
from opsnb.errors import ConfigError

UNITS = {
    "vcpu_hour": "USD per vCPU-hour",
    "gib_hour": "USD per GiB of memory per hour",
    "gpu_hour": "USD per GPU-hour",
    "gb_month": "USD per GB stored per month",
}
"""The units the cost model knows, by key."""
TEXT_KEYS = ("description", "source")
EXAMPLE = "examples/prices.yaml"
"""The shipped example table, relative to the project root."""


@dataclass(frozen=True)
class Offer:
    """One named offer: its prices by unit (a missing unit is not offered) and their source."""

    name: str
    prices: dict[str, float]
    source: str
    description: str = ""

    def price(self, unit: str) -> float | None:
        """The price of ``unit`` at this offer, or None where it is not offered."""
        return self.prices.get(unit)


@dataclass(frozen=True)
class PriceTable:
    """A validated price table."""

    path: Path
    date: str
    currency: str
    offers: dict[str, Offer]

    def offer(self, name: str) -> Offer:
        """The offer called ``name``; a name the table lacks lists those it has."""
        if name not in self.offers:
            raise ConfigError(
                f"{self.path}: offers.{name} is not in the price table; offers there: "
                f"{', '.join(self.offers)}; pass one of them (--offer / the 'offer' parameter) "
                "or add it to the table"
            )
        return self.offers[name]


def default_path() -> Path:
    """The shipped example table."""
    return config.project_root() / EXAMPLE


def load(path: str | os.PathLike[str] | None = None) -> PriceTable:
    """Read and validate the price table at ``path`` (default: the shipped example)."""
    where = Path(path) if path else default_path()
    if not where.is_file():
        raise ConfigError(f"price table {where} does not exist; pass a YAML file like {EXAMPLE}")
    try:
        raw = yaml.safe_load(where.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc}); fix the file") from exc
    return parse(raw, where)


def parse(raw: Any, where: Path) -> PriceTable:
    """Validate an already-read table (``where`` names it in errors)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with date, currency and offers")
    for key in ("date", "currency", "offers"):
        if key not in raw:
            raise ConfigError(
                f"{where}: key '{key}' is missing; a price table states its date, its "
                "currency and its offers (see examples/prices.yaml)"
            )
    if str(raw["currency"]) != "USD":
        raise ConfigError(
            f"{where}: currency is {raw['currency']!r}; expected 'USD' (convert the prices "
            "and say so in each offer's source)"
        )
    offers_raw = raw["offers"]
    if not isinstance(offers_raw, dict) or not offers_raw:
        raise ConfigError(f"{where}: offers must be a non-empty mapping of name -> prices")
    offers = {str(n): _offer(str(n), body, where) for n, body in offers_raw.items()}
    return PriceTable(where, str(raw["date"]), "USD", offers)


def _offer(name: str, body: Any, where: Path) -> Offer:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: offers.{name} must be a mapping of unit -> price")
    prices: dict[str, float] = {}
    for key, value in body.items():
        if key in TEXT_KEYS:
            continue
        if key not in UNITS:
            raise ConfigError(
                f"{where}: offers.{name}.{key} is a unit the cost model does not know; "
                f"expected one of {', '.join(UNITS)} (or {', '.join(TEXT_KEYS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(
                f"{where}: offers.{name}.{key} = {value!r} is not a number; expected "
                f"{UNITS[key]} as a plain number such as 0.0316"
            )
        if value < 0 or math.isinf(value):
            raise ConfigError(
                f"{where}: offers.{name}.{key} = {value!r} is negative or infinite; expected "
                f"{UNITS[key]} >= 0"
            )
        prices[key] = float(value)
    if "vcpu_hour" not in prices:
        raise ConfigError(
            f"{where}: offers.{name}.vcpu_hour is missing; every offer prices a vCPU-hour"
        )
    source = body.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(
            f"{where}: offers.{name}.source is missing; say where each figure came from "
            "(a URL, or 'assumption: ...')"
        )
    return Offer(name, prices, source.strip(), str(body.get("description", "")))
