"""Benchmark of the price stores: write a large history of one coin, then time last_n(100) and a one-day between.

    python -m tests.contract.bench_store                    # memory, SQLite, mongomock, and MONGODB_TEST_URI if set
    python -m tests.contract.bench_store --backend sqlite --records 200000

Speed targets live here, not in the test suite (the developers' guide: timed tests flake; the contract suite
asserts correctness and that the key index serves the read). Each read figure is the median of --reads reads;
a backend over its budget makes the exit status 1. The budgets are generous multiples of what was measured
(docs/mongodb.md has the figures); FerretDB's are wide because FerretDB 1.x on SQLite scans the collection for
these queries (it pushes down only `_id` equality filters).
"""
from __future__ import annotations

import argparse
import statistics
import sqlite3
import sys
import time
from datetime import timedelta

from tests.contract.backends import (HISTORY_END, NO_SERVER_REASON, Backend, MemoryBackend, MongomockBackend,
                                     MongoServerBackend, history, real_server_uri, sqlite_in_temp_dir)

# Median read budgets in milliseconds: (last_n(100), between(one day)).
BUDGETS_MS = {
    "memory": (500, 500),
    "sqlite": (50, 100),
    "mongomock": (1000, 1000),
    "mongodb": (50, 200),
    "ferretdb": (15_000, 15_000),
}


def _median_ms(fn, reads: int) -> float:
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench(backend: Backend, records: int, batch: int, reads: int) -> dict:
    repo = backend.make()
    try:
        server = backend.name
        if isinstance(backend, MongoServerBackend):
            info = backend.build_info()
            server = f"FerretDB {info['ferretdbVersion']}" if info.get("ferretdbVersion") else \
                f"MongoDB {info['version']}"
        elif backend.name == "sqlite":
            server = f"SQLite {sqlite3.sqlite_version}"
        kind = "ferretdb" if server.startswith("FerretDB") else backend.name

        data = history("bitcoin", records)
        started = time.perf_counter()
        for i in range(0, records, batch):
            repo.add_batch(data[i:i + batch])
        write_s = time.perf_counter() - started
        assert repo.count() == records

        last_n = _median_ms(lambda: repo.last_n("bitcoin", "usd", 100), reads)
        day = HISTORY_END - timedelta(days=1)
        between = _median_ms(lambda: repo.between("bitcoin", "usd", day, HISTORY_END), reads)
        budget = BUDGETS_MS[kind]
        return {"backend": backend.name, "server": server, "records": records, "batch": batch,
                "write_s": write_s, "rate": records / write_s, "last_n_ms": last_n, "between_ms": between,
                "day_rows": len(repo.between("bitcoin", "usd", day, HISTORY_END)), "budget": budget,
                "ok": last_n <= budget[0] and between <= budget[1]}
    finally:
        backend.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["memory", "sqlite", "mongomock", "mongodb"],
                        help="repeatable; default: all (mongodb when MONGODB_TEST_URI is set)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=None, help="records per add_batch (default: per backend)")
    parser.add_argument("--reads", type=int, default=5)
    args = parser.parse_args(argv)

    names = args.backend or ["memory", "sqlite", "mongomock", "mongodb"]
    results, temp_dirs = [], []
    for name in names:
        records = args.records
        if name == "memory":
            backend: Backend = MemoryBackend()
        elif name == "sqlite":
            backend, directory = sqlite_in_temp_dir()
            temp_dirs.append(directory)
        elif name == "mongomock":
            backend = MongomockBackend()
            records = min(records, backend.history_size)  # quadratic inserts: see MongomockBackend
        else:
            uri = real_server_uri()
            if uri is None:
                print(f"mongodb: skipped: {NO_SERVER_REASON}")
                continue
            backend = MongoServerBackend(uri)
        results.append(bench(backend, records, args.batch or backend.history_batch, args.reads))
    for directory in temp_dirs:
        directory.cleanup()

    print(f"{'backend':<10} {'server':<16} {'records':>8} {'batch':>6} {'write s':>8} {'rec/s':>9} "
          f"{'last_n(100) ms':>15} {'1-day between ms':>17} {'rows':>5}  budget ms (last_n/between)")
    for r in results:
        print(f"{r['backend']:<10} {r['server']:<16} {r['records']:>8} {r['batch']:>6} {r['write_s']:>8.2f} "
              f"{r['rate']:>9.0f} {r['last_n_ms']:>15.2f} {r['between_ms']:>17.2f} {r['day_rows']:>5}  "
              f"{r['budget'][0]}/{r['budget'][1]} {'ok' if r['ok'] else 'OVER BUDGET'}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
