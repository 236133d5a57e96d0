"""Tracked coins and the matic-network → polygon-ecosystem-token alias."""
import pytest

from app.domain.errors import UnknownCoin, UnknownCurrency
from app.domain.model import TrackedCoins

TRACKED = TrackedCoins(("bitcoin", "ethereum", "matic-network"), ("usd", "eur"))


def test_matic_network_is_fetched_as_pol():
    assert TRACKED.source_ids() == ("bitcoin", "ethereum", "polygon-ecosystem-token")
    assert TRACKED.aliased() == {"matic-network": "polygon-ecosystem-token"}


def test_both_names_answer_with_pols_records():
    assert TRACKED.resolve("matic-network") == "polygon-ecosystem-token"
    assert TRACKED.resolve("polygon-ecosystem-token") == "polygon-ecosystem-token"
    assert TRACKED.resolve("bitcoin") == "bitcoin"


def test_untracked_coin_names_the_tracked_ones():
    with pytest.raises(UnknownCoin) as err:
        TRACKED.resolve("dogecoin")
    assert "bitcoin, ethereum, matic-network" in err.value.message
    assert err.value.details["tracked"] == ["bitcoin", "ethereum", "matic-network"]


def test_currency_defaults_to_the_first_and_refuses_others():
    assert TRACKED.resolve_currency(None) == "usd"
    assert TRACKED.resolve_currency("eur") == "eur"
    with pytest.raises(UnknownCurrency):
        TRACKED.resolve_currency("jpy")


def test_pairs_cover_every_coin_and_currency():
    assert len(list(TRACKED.pairs())) == 6
