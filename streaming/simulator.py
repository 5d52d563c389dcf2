"""A realistic, seeded card-transaction generator with switchable fraud scenarios.

The world: customers with their own spending level and spread, daily transaction rate, home country, usual
devices, time-of-day habit and location; merchants (terminals) with locations; customers shop at their nearby
merchants. Fraud is injected per transaction with a configured share per scenario:

- ``large_amount``: an unusually large amount (x5-x20 of the customer's level);
- ``compromised_merchant``: a few merchants are compromised for some days; every transaction there is fraud
  (legitimate traffic avoids them while they are compromised, so their whole traffic is the fraud share);
- ``compromised_card``: a few cards are compromised for some days; a share of their transactions are fraud with
  inflated amounts;
- ``card_testing``: bursts of 5-15 small transactions within one minute;
- ``account_takeover``: a device the customer never used, from a foreign country.

Everything is vectorised with numpy, and the same seed gives the same transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from app.schemas import DeviceType, Transaction, kafka_values

SCENARIOS = ("large_amount", "compromised_merchant", "compromised_card", "card_testing", "account_takeover")
COUNTRIES = np.array(["DE", "FR", "NL", "BE", "AT", "ES", "IT", "PL", "GB", "US"])
COUNTRY_WEIGHTS = np.array([0.30, 0.18, 0.10, 0.07, 0.06, 0.09, 0.08, 0.05, 0.04, 0.03])
CURRENCY_OF = {"GB": "GBP", "US": "USD", "PL": "PLN"}
DEVICES = np.array([d.value for d in DeviceType])
MESSAGE_COLUMNS = list(Transaction.model_fields)
NEARBY_MERCHANTS = 12


class ScenarioShares(BaseModel):
    """Share of all transactions produced by each fraud scenario (0 switches a scenario off)."""

    large_amount: float = Field(default=0.0015, ge=0, le=0.2)
    compromised_merchant: float = Field(default=0.0015, ge=0, le=0.2)
    compromised_card: float = Field(default=0.0015, ge=0, le=0.2)
    card_testing: float = Field(default=0.0010, ge=0, le=0.2)
    account_takeover: float = Field(default=0.0010, ge=0, le=0.2)

    def total(self) -> float:
        return sum(getattr(self, name) for name in SCENARIOS)


class DriftConfig(BaseModel):
    """From ``at`` on, the fraud mix and amounts change, to demonstrate drift."""

    at: datetime | None = None
    amount_factor: float = Field(default=1.4, gt=0)
    scenario_factors: dict[str, float] = Field(
        default_factory=lambda: {"card_testing": 3.0, "account_takeover": 3.0, "large_amount": 0.5}
    )


class SimulatorConfig(BaseModel):
    seed: int = 42
    customers: int = Field(default=5_000, ge=1)
    merchants: int = Field(default=1_000, ge=NEARBY_MERCHANTS)
    shares: ScenarioShares = Field(default_factory=ScenarioShares)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    compromise_days: int = Field(default=3, ge=1, description="How long a merchant or card stays compromised")
    compromised_merchants_per_day: int = Field(default=3, ge=1)
    compromised_cards_per_day: int = Field(default=20, ge=1)


@dataclass(frozen=True)
class World:
    """Customers and merchants, fixed for a seed."""

    customer_ids: np.ndarray
    customer_rate: np.ndarray  # transactions per day
    customer_log_mean: np.ndarray  # log of the typical amount
    customer_log_sd: np.ndarray
    customer_country: np.ndarray
    customer_devices: np.ndarray  # (n, 2) usual devices
    customer_hour: np.ndarray  # preferred hour of day
    customer_card: np.ndarray
    customer_nearby: np.ndarray  # (n, NEARBY_MERCHANTS) merchant indices
    merchant_ids: np.ndarray

    @classmethod
    def build(cls, config: SimulatorConfig) -> World:
        rng = np.random.default_rng(config.seed)
        n, m = config.customers, config.merchants
        customer_xy = rng.uniform(0, 100, size=(n, 2))
        merchant_xy = rng.uniform(0, 100, size=(m, 2))
        nearby = np.empty((n, NEARBY_MERCHANTS), dtype=np.int64)
        for start in range(0, n, 2048):  # chunked so memory stays small for large worlds
            block = customer_xy[start : start + 2048]
            distances = ((block[:, None, :] - merchant_xy[None, :, :]) ** 2).sum(axis=2)
            nearby[start : start + 2048] = np.argpartition(distances, NEARBY_MERCHANTS, axis=1)[:, :NEARBY_MERCHANTS]
        devices = np.stack([rng.choice(DEVICES, size=n), rng.choice(DEVICES, size=n)], axis=1)
        return cls(
            customer_ids=np.arange(1, n + 1, dtype=np.int64),
            customer_rate=rng.gamma(shape=2.0, scale=1.5, size=n) + 0.2,
            customer_log_mean=rng.normal(np.log(40), 0.6, size=n),
            customer_log_sd=rng.uniform(0.3, 0.9, size=n),
            customer_country=rng.choice(COUNTRIES, size=n, p=COUNTRY_WEIGHTS),
            customer_devices=devices,
            customer_hour=rng.normal(14, 3.5, size=n) % 24,
            customer_card=np.array([f"{x:04d}" for x in rng.integers(0, 10_000, size=n)]),
            customer_nearby=nearby,
            merchant_ids=np.arange(1, m + 1, dtype=np.int64),
        )


class Simulator:
    """Generates transactions; ``scenario`` is kept beside the message columns (empty string for legitimate)."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.world = World.build(self.config)
        self.rng = np.random.default_rng(self.config.seed + 1)
        self._weights = self.world.customer_rate / self.world.customer_rate.sum()

    # --- compromise calendars: which merchants / cards are compromised on a day --------------------------------
    def _compromised(self, day: int, pool: np.ndarray, per_day: int, salt: int) -> np.ndarray:
        chosen = []
        for start_day in range(day - self.config.compromise_days + 1, day + 1):
            rng = np.random.default_rng([self.config.seed, salt, start_day])
            chosen.append(rng.choice(pool, size=min(per_day, len(pool)), replace=False))
        return np.unique(np.concatenate(chosen))

    def compromised_merchants(self, day: int) -> np.ndarray:
        merchants = np.arange(len(self.world.merchant_ids))
        return self._compromised(day, merchants, self.config.compromised_merchants_per_day, 1)

    def compromised_cards(self, day: int) -> np.ndarray:
        return self._compromised(day, np.arange(len(self.world.customer_ids)), self.config.compromised_cards_per_day, 2)

    # --- generation -----------------------------------------------------------------------------------------
    def backfill(self, start: datetime, days: int) -> Iterator[pd.DataFrame]:
        """``days`` of history from ``start``, one DataFrame per day, in generation order (not sorted by event time;
        a burst late in a day can spill past its midnight)."""
        start = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(days):
            day_start = start + timedelta(days=offset)
            count = int(self.rng.poisson(self.world.customer_rate.sum()))
            customers = self.rng.choice(len(self.world.customer_ids), size=count, p=self._weights)
            hours = (self.world.customer_hour[customers] + self.rng.normal(0, 3, size=count)) % 24
            seconds = hours * 3600
            times = pd.to_datetime(day_start) + pd.to_timedelta(seconds, unit="s")
            yield self._finish(customers, times.to_numpy(dtype="datetime64[us]"))

    def live_batch(self, count: int, start: datetime, end: datetime) -> pd.DataFrame:
        """``count`` transactions with event times spread over [start, end)."""
        customers = self.rng.choice(len(self.world.customer_ids), size=count, p=self._weights)
        span_us = max(int((end - start).total_seconds() * 1e6), 1)
        offsets = np.sort(self.rng.integers(0, span_us, size=count))
        times = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]")
        return self._finish(customers, times)

    def _shares_at(self, times: np.ndarray) -> dict[str, np.ndarray]:
        shares = {name: np.full(len(times), getattr(self.config.shares, name)) for name in SCENARIOS}
        drift = self.config.drift
        if drift.at is not None:
            drifted = times >= np.datetime64(drift.at.astimezone(UTC).replace(tzinfo=None), "us")
            for name, factor in drift.scenario_factors.items():
                shares[name] = np.where(drifted, shares[name] * factor, shares[name])
        return shares

    def _finish(self, customers: np.ndarray, times: np.ndarray) -> pd.DataFrame:
        """Turn (customer, time) pairs into full transactions, legitimate or fraud."""
        w, rng, n = self.world, self.rng, len(customers)
        days = (times.astype("datetime64[D]").astype(np.int64)).astype(np.int64)
        merchants = w.customer_nearby[customers, rng.integers(0, NEARBY_MERCHANTS, size=n)]
        amounts = np.exp(rng.normal(w.customer_log_mean[customers], w.customer_log_sd[customers]))
        if self.config.drift.at is not None:
            drifted = times >= np.datetime64(self.config.drift.at.astimezone(UTC).replace(tzinfo=None), "us")
            amounts = np.where(drifted, amounts * self.config.drift.amount_factor, amounts)
        devices = w.customer_devices[customers, rng.integers(0, 2, size=n)]
        countries = w.customer_country[customers].copy()
        scenario = np.full(n, "", dtype=object)

        # One scenario draw per transaction, with the (possibly drifted) shares as probabilities.
        shares = self._shares_at(times)
        burst_size = 10  # mean of 5..15: a burst start is drawn at share / mean size so the share holds per row
        probabilities = np.stack(
            [shares[name] / (burst_size if name == "card_testing" else 1) for name in SCENARIOS], axis=1
        )
        draw = rng.random(n)
        cumulative = np.cumsum(probabilities, axis=1)
        chosen = np.where(draw[:, None] < cumulative, np.arange(len(SCENARIOS))[None, :], len(SCENARIOS)).min(axis=1)

        # Legitimate traffic avoids merchants while they are compromised.
        all_merchants = np.arange(len(w.merchant_ids))
        for day in np.unique(days):
            compromised = self.compromised_merchants(int(day))
            hit = (days == day) & np.isin(merchants, compromised) & (chosen != SCENARIOS.index("compromised_merchant"))
            for row in np.flatnonzero(hit):
                options = np.setdiff1d(w.customer_nearby[customers[row]], compromised)
                merchants[row] = rng.choice(options if options.size else np.setdiff1d(all_merchants, compromised))

        for index, name in enumerate(SCENARIOS):
            rows = np.flatnonzero(chosen == index)
            if rows.size == 0:
                continue
            scenario[rows] = name
            if name == "large_amount":
                amounts[rows] *= rng.uniform(5, 20, size=rows.size)
            elif name == "compromised_merchant":
                for row in rows:
                    merchants[row] = rng.choice(self.compromised_merchants(int(days[row])))
            elif name == "compromised_card":
                for row in rows:
                    customers[row] = rng.choice(self.compromised_cards(int(days[row])))
                amounts[rows] = np.exp(w.customer_log_mean[customers[rows]]) * rng.uniform(2, 5, size=rows.size)
                merchants[rows] = w.customer_nearby[customers[rows], rng.integers(0, NEARBY_MERCHANTS, size=rows.size)]
                devices[rows] = w.customer_devices[customers[rows], 0]
                countries[rows] = w.customer_country[customers[rows]]
            elif name == "account_takeover":
                usual = w.customer_devices[customers[rows]]
                for i, row in enumerate(rows):
                    devices[row] = rng.choice(np.setdiff1d(DEVICES, usual[i]))
                    home = w.customer_country[customers[row]]
                    countries[row] = rng.choice(COUNTRIES[home != COUNTRIES])
                amounts[rows] *= rng.uniform(1, 4, size=rows.size)

        frame = pd.DataFrame(
            {
                "customer_index": customers,
                "merchant_index": merchants,
                "amount": np.round(np.maximum(amounts, 0.01), 2),
                "timestamp": times,
                "device_type": devices,
                "country": countries,
                "scenario": scenario,
            }
        )
        frame = self._expand_card_testing(frame)
        return self._to_messages(frame)

    def _expand_card_testing(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each card-testing draw becomes a burst of 5-15 small transactions within one minute."""
        starts = frame.index[frame["scenario"] == "card_testing"]
        if len(starts) == 0:
            return frame
        rng, bursts = self.rng, []
        for index in starts:
            row = frame.loc[index]
            size = int(rng.integers(5, 16))
            offsets = np.sort(rng.uniform(0, 60, size=size))
            burst = pd.DataFrame(
                {
                    "customer_index": row["customer_index"],
                    "merchant_index": rng.choice(self.world.customer_nearby[row["customer_index"]], size=size),
                    "amount": np.round(rng.uniform(0.5, 5.0, size=size), 2),
                    "timestamp": row["timestamp"] + pd.to_timedelta(offsets, unit="s"),
                    "device_type": row["device_type"],
                    "country": row["country"],
                    "scenario": "card_testing",
                }
            )
            bursts.append(burst)
        frame = pd.concat([frame.drop(index=starts), *bursts], ignore_index=True)
        return frame.sort_values("timestamp", kind="stable", ignore_index=True)

    def _to_messages(self, frame: pd.DataFrame) -> pd.DataFrame:
        w, n = self.world, len(frame)
        customers = frame["customer_index"].to_numpy()
        countries = frame["country"].to_numpy()
        # Ids follow from the seed and the frame's time span: rerunning the same seed over the same period gives
        # the same ids (the store keeps them once), a live run or another period gets new ones.
        span = frame["timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64)
        bounds = [int(span.min()), int(span.max())] if n else [0, 0]
        uuid_rng = np.random.default_rng([self.config.seed, 2, *bounds])
        random_bytes = uuid_rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        out = pd.DataFrame(
            {
                "transaction_id": [str(uuid.UUID(bytes=b.tobytes(), version=4)) for b in random_bytes],
                "customer_id": w.customer_ids[customers],
                "merchant_id": w.merchant_ids[frame["merchant_index"].to_numpy()],
                "amount": frame["amount"].to_numpy(),
                "currency": [CURRENCY_OF.get(c, "EUR") for c in countries],
                "timestamp": pd.to_datetime(frame["timestamp"]).dt.tz_localize(UTC),
                "card_last_4": w.customer_card[customers],
                "is_fraud": (frame["scenario"].to_numpy() != "").astype(np.int64),
                "country": countries,
                "device_type": frame["device_type"].to_numpy(),
            }
        )
        out["scenario"] = frame["scenario"].to_numpy()
        return out


def message_values(frame: pd.DataFrame) -> list[bytes]:
    """Kafka values for a generated frame, in the wire form the message model defines (``app.schemas.kafka_values``)."""
    return kafka_values(frame)
