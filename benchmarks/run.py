"""Benchmark harness: sync time against ARM throttling, no-op resync, one change among many, transform speed,
start-up time and peak memory.

    python benchmarks/run.py [--quick] [--json FILE] [--repeat K]

Each measurement runs in a fresh worker process (its peak RSS is its own) against emulators started in another
process with latency and ARM token-bucket throttling, time-scaled so a full run takes minutes. Results are medians of
several runs, with the lower bound each run could reach: the token-bucket time for the writes and reads it made plus
one API's critical path (its PUT, the import's long-running operation, its policy PUT).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READS = (250.0, 25.0)  # ARM's per-subscription buckets: (capacity, refill per second)
WRITES = (200.0, 10.0)
TIME_SCALE = 20.0  # emulated time runs 20x faster: refill 200 writes/s, 500 reads/s
LRO_SECONDS = 1.0  # an import's long-running operation, in emulated seconds
LATENCY_MS = 5.0  # added to every ARM call, real milliseconds
CONCURRENCY = 16


def bucket_seconds(calls: float, bucket: tuple[float, float]) -> float:
    """Least real time for ``calls`` against a full bucket at TIME_SCALE."""
    capacity, rate = bucket
    return max(0.0, calls - capacity) / (rate * TIME_SCALE)


CRITICAL_PATH = LRO_SECONDS / TIME_SCALE + 3 * LATENCY_MS / 1000.0


# -- emulators in their own process ------------------------------------------------------------------

def _serve(n: int, commands: Any, replies: Any) -> None:
    from apimsync.emulators.apim import Throttle
    from apimsync.emulators.sandbox import Sandbox

    throttle = Throttle(enabled=True, reads=READS, writes=WRITES, deletes=WRITES)
    with Sandbox(fixtures=None, endpoints=n, throttle=throttle, time_scale=TIME_SCALE, lro_seconds=LRO_SECONDS) as box:
        box.apim.faults.configure(latency_ms=LATENCY_MS)
        replies.put((box.config(), box.env()))
        while True:
            command, *args = commands.get()
            if command == "stop":
                break
            if command == "stats":
                replies.put(box.apim.stats())
            elif command == "reset":
                box.apim.reset_stats()
                box.apim._reset_buckets()
                replies.put(True)
            elif command == "change":  # a new model version: a new config version and a changed signature
                name = args[0]
                item, text = box.databricks.endpoint_and_spec(name)
                spec = json.loads(text or "{}")
                for path in spec.get("paths", {}).values():
                    path["post"]["requestBody"]["content"]["application/json"]["schema"]["description"] = "v2"
                item["config"]["config_version"] = int(item["config"].get("config_version") or 1) + 1
                box.databricks.put_endpoint(item, spec)
                replies.put(True)


class Emulators:
    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self._commands, self._replies = ctx.Queue(), ctx.Queue()
        self._proc = ctx.Process(target=_serve, args=(n, self._commands, self._replies), daemon=True)

    def __enter__(self) -> Emulators:
        self._proc.start()
        self.config, self.env = self._replies.get(timeout=300)
        return self

    def __exit__(self, *exc: object) -> None:
        self._commands.put(("stop",))
        self._proc.join(timeout=30)

    def ask(self, *command: Any) -> Any:
        self._commands.put(command)
        return self._replies.get(timeout=120)

    def engine(self, concurrency: int = CONCURRENCY) -> Any:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        from apimsync.config import settings_from_mapping
        from apimsync.engine import Engine

        settings = settings_from_mapping({**self.config, "concurrency": concurrency}, origin="benchmark")
        client = WorkspaceClient(config=Config(host=self.env["DATABRICKS_HOST"], token=self.env["DATABRICKS_TOKEN"],
                                               auth_type="pat"))
        return Engine(settings, workspace_clients={"emulator": client}, env=self.env)


def _result(wall: float, lower: float, stats: dict[str, Any], failed: int, **extra: Any) -> dict[str, Any]:
    return {"wall_s": round(wall, 3), "lower_bound_s": round(lower, 3), "ratio": round(wall / lower, 3),
            "writes": stats["writes"], "reads": stats["reads"], "deletes": stats["deletes"],
            "throttled": stats["throttled"], "failed": failed,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), **extra}


def _lower(stats: dict[str, Any], critical: float) -> float:
    return max(bucket_seconds(stats["writes"], WRITES), bucket_seconds(stats["reads"], READS)) + critical


# -- scenarios, each run in a fresh worker process --------------------------------------------------------

def scenario_full(n: int) -> dict[str, Any]:
    """A full sync of n new endpoints into an empty APIM."""
    with Emulators(n) as emu:
        engine = emu.engine()
        emu.ask("reset")
        started = time.monotonic()
        report = engine.sync()
        wall = time.monotonic() - started
        stats = emu.ask("stats")
    return _result(wall, _lower(stats, CRITICAL_PATH), stats, len(report.failed), apis=stats["apis"],
                   writes_per_api=round(stats["writes"] / max(1, stats["apis"]), 3))


def scenario_naive(n: int) -> dict[str, Any]:
    """The notebook loop a user writes by hand: one endpoint at a time, waiting for each import."""
    from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter, PolicyContract

    from apimsync.source import Endpoint
    from apimsync.target import location_poller

    with Emulators(n) as emu:
        engine = emu.engine(concurrency=1)
        apim, source = engine.apim, engine.sources[0]
        policy = ("<policies><inbound><base /><set-header name=\"Authorization\" exists-action=\"override\">"
                  "<value>Bearer dapi-token-pasted-here</value></set-header></inbound></policies>")
        emu.ask("reset")
        started = time.monotonic()
        failed = 0
        for ep in source.list_endpoints():
            if not isinstance(ep, Endpoint):
                continue
            spec = source.fetch(ep).spec
            if spec is None:
                continue
            for item in spec["paths"].values():  # the hand-written fix: delete the dataframe_split variant
                schema = item["post"]["requestBody"]["content"]["application/json"]["schema"]
                if "oneOf" in schema:
                    schema["oneOf"] = [v for v in schema["oneOf"] if "dataframe_split" not in v.get("properties", {})]
            try:
                apim.client.api.begin_create_or_update(
                    apim.rg, apim.svc, f"naive-{ep.name}", ApiCreateOrUpdateParameter(
                        format="openapi+json", value=json.dumps(spec), path=f"naive/{ep.name}", display_name=ep.name,
                        service_url=ep.backend_url, protocols=["https"]),
                    polling=location_poller(engine.settings.apim.polling_interval)).result()
                apim.client.api_policy.create_or_update(apim.rg, apim.svc, f"naive-{ep.name}", "policy",
                                                        PolicyContract(value=policy, format="rawxml"))
            except Exception:
                failed += 1
        wall = time.monotonic() - started
        stats = emu.ask("stats")
    return _result(wall, _lower(stats, CRITICAL_PATH), stats, failed, apis=stats["apis"])


def scenario_noop(n: int) -> dict[str, Any]:
    """A resync of n endpoints with nothing changed in Databricks."""
    with Emulators(n) as emu:
        emu.engine().sync()
        emu.ask("reset")
        started = time.monotonic()
        report = emu.engine().sync()
        wall = time.monotonic() - started
        stats = emu.ask("stats")
    lower = bucket_seconds(stats["reads"], READS) + LATENCY_MS / 1000.0
    return _result(wall, lower, stats, len(report.failed), changes=int(report.plan.has_changes))


def scenario_one_change(n: int) -> dict[str, Any]:
    """One endpoint among n gets a new spec: writes only for that API."""
    with Emulators(n) as emu:
        emu.engine().sync()
        emu.ask("change", "syn-0002")
        emu.ask("reset")
        started = time.monotonic()
        report = emu.engine().sync()
        wall = time.monotonic() - started
        stats = emu.ask("stats")
    changed = sorted({o.api_id for o in report.outcomes})
    return _result(wall, _lower(stats, CRITICAL_PATH), stats, len(report.failed), changed_apis=changed)


def scenario_transform(paths: int) -> dict[str, Any]:
    """The default pipeline on one big spec against the json.loads + json.dumps floor (medians of 7)."""
    from apimsync.emulators.synthetic import big_spec
    from apimsync.transform import TransformContext, load_pipeline

    spec = big_spec(paths)
    text = json.dumps(spec)
    pipeline = load_pipeline()
    ctx = TransformContext(endpoint="big-endpoint", server_url="https://adb-1.azuredatabricks.net/serving-endpoints/b")
    floors, walls = [], []
    for _ in range(7):
        t = time.perf_counter()
        json.dumps(json.loads(text))
        floors.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipeline.run(spec, ctx)
        walls.append(time.perf_counter() - t)
    floor, wall = statistics.median(floors), statistics.median(walls)
    return {"wall_s": round(wall, 4), "lower_bound_s": round(floor, 4), "ratio": round(wall / floor, 3), "writes": 0,
            "reads": 0, "throttled": 0, "failed": 0, "spec_mb": round(len(text) / 1e6, 2), "paths": paths}


def scenario_startup(_: int) -> dict[str, Any]:
    """``apimsync --help`` wall time, median of 10 fresh processes."""
    walls = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "apimsync", "--help"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    return {"wall_s": round(statistics.median(walls), 4), "lower_bound_s": 0.3, "ratio": None, "writes": 0,
            "reads": 0, "throttled": 0, "failed": 0}


SCENARIOS = {"full": scenario_full, "naive": scenario_naive, "noop": scenario_noop,
             "one_change": scenario_one_change, "transform": scenario_transform, "startup": scenario_startup}


def measure(name: str, n: int, repeat: int) -> dict[str, Any]:
    """Median of ``repeat`` fresh worker processes."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, str(Path(__file__)), "--worker", name, str(n)], capture_output=True,
                             text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode != 0:
            raise SystemExit(f"benchmark {name} n={n} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = dict(runs[-1])
    for key in ("wall_s", "lower_bound_s", "ratio", "writes", "reads", "throttled", "failed", "peak_rss_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            median = float(statistics.median(values))
            counted = key in ("writes", "reads", "throttled", "failed") and median.is_integer()
            result[key] = int(median) if counted else round(median, 3)
    result.update(scenario=name, n=n, runs=len(runs), walls=[r["wall_s"] for r in runs])
    print(f"{name:>10} n={n:<5} wall {result['wall_s']:.3f}s  bound {result['lower_bound_s']:.3f}s  "
          f"ratio {result['ratio']}  writes {result['writes']}  reads {result['reads']}  "
          f"429s {result['throttled']}  failed {result['failed']}", flush=True)
    return result


def plan_runs(quick: bool, repeat: int) -> list[tuple[str, int, int]]:
    if quick:
        return [("full", 10, 2), ("full", 50, 2), ("naive", 10, 1), ("naive", 50, 1), ("noop", 50, 2),
                ("one_change", 50, 2), ("transform", 300, 1), ("startup", 0, 1)]
    runs = [("full", n, repeat if n < 2000 else 2) for n in (10, 100, 500, 2000)]
    runs += [("naive", n, repeat if n < 500 else 1) for n in (10, 100, 500)]
    runs += [("noop", n, repeat if n < 2000 else 2) for n in (10, 100, 500, 2000)]
    runs += [("one_change", 500, repeat), ("transform", 1500, 1), ("startup", 0, 1)]
    return runs


def write_report(results: list[dict[str, Any]], quick: bool) -> None:
    """benchmarks/results/*.json, the README table and the plot (full runs only)."""
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = date.today().isoformat()
    (results_dir / f"{stamp}.json").write_text(json.dumps(_document(results), indent=2) + "\n")
    rows = ["| scenario | N | wall (median) | lower bound | ratio | writes | reads | 429s | failed | peak RSS |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        rss = f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") is not None else "-"
        rows.append(f"| {r['scenario']} | {r['n']} | {r['wall_s']:.3f} s | {r['lower_bound_s']:.3f} s | {ratio} | "
                    f"{r['writes']:g} | {r['reads']:g} | {r['throttled']:g} | {r['failed']:g} | {rss} |")
    readme = HERE / "README.md"
    head = readme.read_text().split("<!-- results -->")[0] if readme.exists() else "# Benchmarks\n\n"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    readme.write_text(head + "<!-- results -->\n" + f"Measured {stamp} on {machine} (time scale x{TIME_SCALE:g}).\n\n"
                      + "\n".join(rows) + "\n")
    _plot(results, HERE / "plot.png")


def _document(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"date": date.today().isoformat(), "machine": platform.platform(), "cpus": os.cpu_count(),
            "time_scale": TIME_SCALE, "latency_ms": LATENCY_MS, "concurrency": CONCURRENCY,
            "scenarios": results}


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, label, style in (("full", "apimsync sync", "o-"), ("naive", "naive notebook loop", "s--")):
        points = sorted((r["n"], r["wall_s"]) for r in results if r["scenario"] == name)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
    bound = sorted((r["n"], r["lower_bound_s"]) for r in results if r["scenario"] == "full")
    if bound:
        ax.plot(*zip(*bound, strict=True), ":", color="gray", label="lower bound (ARM buckets + critical path)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("endpoints (N)")
    ax.set_ylabel(f"wall time, s (ARM time x{TIME_SCALE:g})")
    ax.set_title("Full sync of N new endpoints into APIM")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, few repeats: proves the harness works")
    parser.add_argument("--json", type=Path, help="also write the results JSON here")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (medians are reported)")
    parser.add_argument("--worker", nargs=2, metavar=("SCENARIO", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(SCENARIOS[args.worker[0]](int(args.worker[1]))))
        return
    results = [measure(name, n, repeat) for name, n, repeat in plan_runs(args.quick, args.repeat)]
    full = {r["n"]: r["wall_s"] for r in results if r["scenario"] == "full"}
    for r in results:
        if r["scenario"] == "naive" and r["n"] in full:
            r["speedup_of_apimsync"] = round(r["wall_s"] / full[r["n"]], 2)
            print(f"speedup over the naive loop at n={r['n']}: {r['speedup_of_apimsync']}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_document(results), indent=2) + "\n")
    if not args.quick:
        write_report(results, args.quick)


if __name__ == "__main__":
    main()
