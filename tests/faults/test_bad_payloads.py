"""CoinGecko answering 200 with bad values (nulls, zero and negatives, non-numbers, NaN/Infinity, numbers as strings
or in exponent form, unknown and missing ids, impossible time stamps): the valid coins of a partial answer are
stored and shown, nothing invalid ever reaches the SQLite file, and an answer without one valid coin is retried."""
import json
import time

import pytest

from tests.faults.harness import TRACKED_SOURCE_IDS
from tests.procs import wait_until

pytestmark = pytest.mark.slow

POL = "polygon-ecosystem-token"
FULL = '"usd_market_cap":8e11,"usd_24h_vol":1e9,"usd_24h_change":1.5'  # valid figures besides the price

# (what is wrong, raw /simple/price body with $S for this answer's last_updated_at, USD price stored per coin or
# None when nothing may be stored). Raw text, so NaN, Infinity and exponents reach the client as CoinGecko could
# send them.
PARTIAL = [
    ("nulls",
     '{"bitcoin":{"usd":41000,%s,"last_updated_at":$S},"ethereum":{"usd":null,"last_updated_at":$S},'
     '"polygon-ecosystem-token":{"usd":0.5,"usd_market_cap":null,"usd_24h_vol":null,"usd_24h_change":null,'
     '"last_updated_at":$S}}' % FULL,
     {"bitcoin": 41000, "ethereum": None, POL: 0.5}),
    ("zero and negative prices",
     '{"bitcoin":{"usd":41100,"usd_24h_change":-3.5,"last_updated_at":$S},'
     '"ethereum":{"usd":-2200,"last_updated_at":$S},"polygon-ecosystem-token":{"usd":0,"last_updated_at":$S}}',
     {"bitcoin": 41100, "ethereum": None, POL: None}),
    ("negative market cap and volume, 24h change below -100 %",
     '{"bitcoin":{"usd":41150,%s,"last_updated_at":$S},"ethereum":{"usd":2200,"usd_market_cap":-1,'
     '"last_updated_at":$S},"polygon-ecosystem-token":{"usd":0.5,"usd_24h_vol":-5,"usd_24h_change":-150,'
     '"last_updated_at":$S}}' % FULL,
     {"bitcoin": 41150, "ethereum": None, POL: None}),
    ("non-numbers",
     '{"bitcoin":{"usd":41200.5,%s,"last_updated_at":$S},"ethereum":{"usd":true,"last_updated_at":$S},'
     '"polygon-ecosystem-token":{"usd":"abc","usd_market_cap":[1],"last_updated_at":$S}}' % FULL,
     {"bitcoin": 41200.5, "ethereum": None, POL: None}),
    ("NaN, Infinity and an overflowing exponent",
     '{"bitcoin":{"usd":NaN,"last_updated_at":$S},"ethereum":{"usd":2210,"usd_market_cap":2.6e11,'
     '"last_updated_at":$S},"polygon-ecosystem-token":{"usd":0.5,"usd_market_cap":Infinity,'
     '"usd_24h_vol":1e400,"last_updated_at":$S}}',
     {"bitcoin": None, "ethereum": 2210, POL: None}),
    ("numbers as strings and in exponent form",
     '{"bitcoin":{"usd":"4.14e4","usd_market_cap":"8.1E+11","last_updated_at":$S},'
     '"ethereum":{"usd":2.2e3,"usd_market_cap":2.6E+11,"last_updated_at":$S},'
     '"polygon-ecosystem-token":{"usd":4.5e-1,"usd_24h_change":-1.25e0,"last_updated_at":$S}}',
     {"bitcoin": 41400, "ethereum": 2200, POL: 0.45}),
    ("unknown and missing ids",
     '{"dogecoin":{"usd":0.08,"last_updated_at":$S},"bitcoin":{"usd":41500,%s,"last_updated_at":$S}}' % FULL,
     {"bitcoin": 41500, "ethereum": None, POL: None}),
    ("entries that are not objects",
     '{"bitcoin":41600,"ethereum":[2200],"polygon-ecosystem-token":{"usd":0.46,%s,"last_updated_at":$S}}' % FULL,
     {"bitcoin": None, "ethereum": None, POL: 0.46}),
    ("time stamps overflowing or far in the future",
     '{"bitcoin":{"usd":41700,"last_updated_at":1e20},"ethereum":{"usd":2230,"last_updated_at":99999999999},'
     '"polygon-ecosystem-token":{"usd":0.47,%s,"last_updated_at":$S}}' % FULL,
     {"bitcoin": None, "ethereum": None, POL: 0.47}),
    ("time stamps negative or not a number",
     '{"bitcoin":{"usd":41800,"last_updated_at":-5},"ethereum":{"usd":2240,"last_updated_at":"soon"},'
     '"polygon-ecosystem-token":{"usd":0.48,%s,"last_updated_at":$S}}' % FULL,
     {"bitcoin": None, "ethereum": None, POL: 0.48}),
]
# Answers without one valid coin: the run fails and is retried (the retry gets a normal answer).
HOPELESS = ["{}", "[]", '"ok"', "null",
            json.dumps({"bitcoin": None, "ethereum": "x", POL: []}),
            '{"bitcoin":{"usd":-1},"ethereum":{"usd":NaN},"polygon-ecosystem-token":{"usd":"1,5"}}']


def test_bad_values_are_never_stored_and_partial_answers_keep_their_valid_coins(make_platform, figures):
    """Bad values from CoinGecko: nulls, negatives, non-numbers, NaN, strings, exponents, unknown/missing ids"""
    platform = make_platform()
    fake = platform.fake
    platform.worker(), platform.web()
    platform.wait_stored(1, 40)  # the start-up update
    calls, runs = fake.request_count(), 0
    # A minute ahead: newer than any normal answer during the test, so the web must show these; well within the
    # clock skew the product accepts.
    t = int(time.time()) + 60
    answers = [raw.replace("$S", str(t + i)) for i, (_, raw, _) in enumerate(PARTIAL)] + HOPELESS
    figures.faults += len(answers)
    for raw in answers:  # one run per answer, each waited for, so the answers meet the runs in order
        fake.enqueue("raw", raw=raw)
        platform.trigger()
        runs += 1
        platform.wait_stored(1 + runs, 30)
    wait_until(platform.queue_idle, 10, what="all runs acknowledged")
    time.sleep(0.5)  # a duplicate would show up now

    rows = platform.rows()
    for i, (name, _, expected) in enumerate(PARTIAL):
        for coin, price in expected.items():
            found = [r[4] for r in rows if r[0] == coin and r[2] == t + i]
            assert found == ([] if price is None else [price]), (name, coin, found)
    assert not [r for r in rows if r[0] not in TRACKED_SOURCE_IDS]  # dogecoin: never asked for, never stored
    assert not [r for r in rows if r[2] > t + len(PARTIAL)]  # no time stamp from the future
    figures.upstream_calls = fake.request_count() - calls
    figures.runs(runs, len(platform.stored_events()) - 1)
    assert figures.upstream_calls == len(PARTIAL) + 2 * len(HOPELESS)
    codes = [e["error"]["code"] for e in platform.failed_events()]
    assert codes == ["upstream_bad_response"] * len(HOPELESS)

    # What users see: each coin's newest valid value, never a rejected one.
    wait_until(lambda: platform.shows("/stats?coin=bitcoin", {"price": 41500, "marketCap": 800000000000,
                                                               "24hChange": 1.5}), 10, what="bitcoin shown")
    assert platform.get("/stats?coin=bitcoin").json()["price"] == 41500
    assert platform.get("/stats?coin=ethereum").json() == {"price": 2200, "marketCap": 260000000000,
                                                           "24hChange": None}
    assert platform.get("/stats?coin=matic-network").json() == {"price": 0.48, "marketCap": 800000000000,
                                                                "24hChange": 1.5}
    for coin in ("bitcoin", "ethereum", "matic-network"):
        assert platform.get(f"/deviation?coin={coin}").status_code == 200
    assert platform.check_store() == []
    assert figures.failures() == {}
    assert platform.tracebacks() == []
