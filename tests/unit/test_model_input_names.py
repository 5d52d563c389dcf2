"""The model's input names and their order, pinned: trained models, the drift reference and the prediction log
read inputs by these names, so deriving them differently (app.model_inputs from app.features' windows) must not
change one. A deliberate change of the inputs changes this list and FEATURE_SET together."""

from __future__ import annotations

from app.model_inputs import FEATURE_SET, FEATURES

PINNED = (
    "amount", "hour", "is_night", "is_weekend", "transaction_count", "avg_amount", "max_amount", "amount_std",
    "cust_txn_count_1d", "cust_txn_count_7d", "cust_txn_count_30d",
    "cust_mean_amount_1d", "cust_mean_amount_7d", "cust_mean_amount_30d",
    "amount_to_mean_1d", "amount_to_mean_7d", "amount_to_mean_30d",
    "merchant_txn_count_1d", "merchant_txn_count_7d", "merchant_txn_count_30d",
    "merchant_fraud_rate_1d", "merchant_fraud_rate_7d", "merchant_fraud_rate_30d",
    "country_is_home", "country_share", "country", "device_type", "currency",
)


def test_model_input_names_and_order_are_unchanged() -> None:
    assert FEATURES == PINNED


def test_feature_set_name_is_unchanged() -> None:
    assert FEATURE_SET == "v3-def94cdf27"  # v3: merchant fraud rates from fraud reports by report time

