"""`make bench`: order-sync against the naive loop and the physical limit, in one run.

    python -m bench.run                      # the full run (about 10-15 minutes on 2 cores)
    python -m bench.run --events 2000 --backlog 10000 --naive-seconds 10 --paced-seconds 10   # quick

One embedded broker (Tansu) for the run; per simulator latency one `order-sync simulate`
process; every measured system (`order-sync run`, `bench.naive`, `bench.limit`) in a process of
its own, sampled from /proc. Figures go to bench/README.md (between the results markers) and
bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from bench.events import PLATFORM_COUNT, BenchEvent, bench_events, spread_orders
from bench.infra import (
    BIN,
    ORDER_SYNC,
    Broker,
    Child,
    LiveResults,
    Simulators,
    Topics,
    child_env,
    produce_all,
    produce_paced,
    read_results,
    wait_for_commits,
    wait_for_file,
    wait_ready,
)
from bench.procstat import CpuBudget, ProcessSampler, SamplerGroup
from bench.profile import start_py_spy, stop_py_spy, summarize
from connector.config import ENV_PREFIX
from connector.devtools.broker import free_port

HERE = Path(__file__).parent
START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"
SYSTEMS = ("order-sync", "naive", "limit", "pipeline-floor", "pipeline-floor-one")
#: Not in the default run: `order-sync run` on asyncio's own event loop (ORDER_SYNC_EVENT_LOOP=asyncio).
ASYNCIO = "order-sync-asyncio"
#: Not in the default run: two `order-sync run` replicas in one consumer group, sharing one SQLite
#: file (scale-out on one machine; CPU summed, peak RSS of the larger one).
REPLICAS = "order-sync-x2"
#: Not in the default run: the pipelines of one deployment split over two `order-sync run`
#: processes (`ORDER_SYNC_PIPELINES`), as the chart's `pipelines.split` does with pods: the intake,
#: VU Custom and Elastic Path in one, Sellercloud and Ventmere in the other; one SQLite file.
SPLIT = "order-sync-split"
SPLIT_PIPELINES = ("intake,vucustom,elasticpath", "sellercloud,ventmere")
#: The paced scenario's floor: bench.echo, consume and publish with the connector's client options.
FLOOR = "kafka floor"
#: bench.floor, the Kafka work the guarantees require (five groups, a result per
#: delivery) and the PUTs, with no store, no decode, no ordering: what no implementation can go below.
PIPELINE_FLOOR = "pipeline-floor"
#: Not in the default run: bench.floor --groups one, the same floor with one consumer group for all
#: platforms (each event fetched and its `event_id` read once, its four PUTs and results, one commit).
PIPELINE_FLOOR_ONE = "pipeline-floor-one"
SCENARIOS = ("throughput", "paced", "backlog")


@dataclass
class Row:
    scenario: str
    system: str
    events: int
    window_s: float
    deliveries: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_per_1k_s: float | None = None
    peak_rss_mib: float | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.window_s if self.window_s > 0 else 0.0

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.window_s if self.window_s > 0 else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.broker = Broker(log_file=workdir / "tansu.log")
        self.rows: list[Row] = []
        self._seeds = itertools.count(100)
        self._runs = itertools.count(1)

    def say(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _connector(
        self,
        sims: Simulators,
        topics: Topics,
        label: str,
        system: str = "order-sync",
        replica: int = 0,
        seed: int | None = None,
        events: int = 0,
    ) -> tuple[Child, int]:
        http_port = free_port()
        env = child_env(
            {
                **sims.connector_env(),
                **topics.connector_env(),
                f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
                f"{ENV_PREFIX}HTTP__PORT": str(http_port),
                f"{ENV_PREFIX}HTTP__HOST": "127.0.0.1",
                f"{ENV_PREFIX}IDEMPOTENCY__URL": f"sqlite:///{self.workdir / f'{label}.db'}",
                **({f"{ENV_PREFIX}EVENT_LOOP": "asyncio"} if system == ASYNCIO else {}),
                **({f"{ENV_PREFIX}PIPELINES": SPLIT_PIPELINES[replica]} if system == SPLIT else {}),
                **self._session_env(),
            }
        )
        argv = [ORDER_SYNC, "run"]
        if system in (PIPELINE_FLOOR, PIPELINE_FLOOR_ONE):
            argv = [str(BIN / "python"), "-m", "bench.floor", "--events", str(events), "--seed", str(seed)]
            argv += ["--ready", str(self.workdir / f"{label}.ready")]
            argv += ["--groups", "one" if system == PIPELINE_FLOOR_ONE else "five"]
        return Child(argv, env, self.workdir / f"{label}-{replica}.log"), http_port

    def _budget(self, sims: Simulators) -> CpuBudget:
        pids = {"simulators": sims.child.pid, "bench": os.getpid()}
        if self.broker.pid is not None:
            pids["broker"] = self.broker.pid
        return CpuBudget(pids).start()

    def _session_env(self) -> dict[str, str]:
        """A shorter consumer session (`--session-timeout-ms`), for runs where joining time counts:
        the embedded broker holds a new group's first join for half the session timeout."""
        timeout = self.args.session_timeout_ms
        if timeout is None:
            return {}
        return {
            f"{ENV_PREFIX}KAFKA__SESSION_TIMEOUT_MS": str(timeout),
            f"{ENV_PREFIX}KAFKA__HEARTBEAT_INTERVAL_MS": str(max(100, timeout // 6)),
        }

    def _peer_env(self, sims: Simulators, topics: Topics | None) -> dict[str, str]:
        extra = {
            **sims.connector_env(),
            f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            **self._session_env(),
        }
        if topics is not None:
            extra.update(topics.connector_env())
        return child_env(extra)

    # --- throughput ------------------------------------------------------------------------

    async def order_sync_throughput(
        self,
        sims: Simulators,
        events: list[BenchEvent],
        scenario: str,
        system: str = "order-sync",
        seed: int | None = None,
    ) -> Row:
        label = f"{system}-{next(self._runs)}"
        topics = await Topics.create(self.broker.bootstrap_servers, label)
        produced = await produce_all(self.broker.bootstrap_servers, topics.input, events)
        children = [
            self._connector(sims, topics, label, system, replica, seed, len(events))[0]
            for replica in range(2 if system in (REPLICAS, SPLIT) else 1)
        ]
        child = children[0]
        sampler = SamplerGroup([ProcessSampler(c.pid) for c in children]).start()
        budget = self._budget(sims)
        spy = start_py_spy(child.pid, self.args.profile / f"{label}.txt") if self.args.profile else None
        expected = len(events) * PLATFORM_COUNT
        try:
            await wait_for_commits(
                self.broker.bootstrap_servers,
                topics,
                produced.ends,
                self.args.run_timeout,
                child,
                one_group=system == PIPELINE_FLOOR_ONE,
            )
        finally:
            await asyncio.to_thread(stop_py_spy, spy)
            await budget.stop()
            await sampler.stop()
            for each in children:
                await each.stop()
        if spy is not None:
            profile = self.args.profile / f"{label}.txt"
            self.say(f"  profile {profile}:\n{summarize(profile)}")
        results = await read_results(self.broker.bootstrap_servers, topics, expected)
        first = min(r.published_at for r in results)
        last = max(r.published_at for r in results)
        completed = len({r.event_id for r in results})
        latencies = [(r.published_at - produced.at[r.event_id]) * 1000 for r in results]
        cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
        outcomes: dict[str, int] = {}
        for r in results:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        note = "" if len(results) >= expected else f"timed out: {len(results)}/{expected} results"
        return Row(
            scenario,
            system,
            completed,
            last - first,
            len(results),
            percentile(latencies, 50),
            percentile(latencies, 99),
            cpu / completed * 1000 if completed else None,
            sampler.peak_rss_mib,
            note,
            {"outcomes": outcomes, "cores": budget.cores(first, last, measured=sampler)},
        )

    async def naive_throughput(self, sims: Simulators, events: list[BenchEvent], scenario: str) -> Row:
        label = f"naive-{next(self._runs)}"
        topics = await Topics.create(self.broker.bootstrap_servers, label)
        await produce_all(self.broker.bootstrap_servers, topics.input, events)
        out = self.workdir / f"{label}.json"
        argv = [
            str(BIN / "python"),
            "-m",
            "bench.naive",
            "--out",
            str(out),
            "--max-events",
            str(len(events)),
            "--max-seconds",
            str(self.args.naive_seconds),
        ]
        child = Child(argv, self._peer_env(sims, topics), self.workdir / f"{label}.log")
        sampler = ProcessSampler(child.pid).start()
        budget = self._budget(sims)
        await child.wait(self.args.naive_seconds + 60)
        await budget.stop()
        await sampler.stop()
        await child.stop()
        summary = orjson.loads(out.read_bytes())
        window = summary["last_at"] - summary["first_at"]
        cpu = sampler.cpu_at(summary["last_at"]) - sampler.cpu_at(summary["first_at"])
        done = summary["events"]
        note = f"time-boxed: first {done} of {len(events)} events" if done < len(events) else ""
        return Row(
            scenario,
            "naive",
            done,
            window,
            summary["deliveries"],
            cpu_per_1k_s=cpu / done * 1000 if done else None,
            peak_rss_mib=sampler.peak_rss_mib,
            note=note,
            extra={
                "statuses": summary["statuses"],
                "cores": budget.cores(summary["first_at"], summary["last_at"], measured=sampler),
            },
        )

    async def limit_throughput(self, sims: Simulators, count: int, scenario: str) -> Row:
        label = f"limit-{next(self._runs)}"
        out = self.workdir / f"{label}.json"
        argv = [
            str(BIN / "python"),
            "-m",
            "bench.limit",
            "--events",
            str(count),
            "--seed",
            str(next(self._seeds)),
            "--out",
            str(out),
        ]
        child = Child(argv, self._peer_env(sims, None), self.workdir / f"{label}.log")
        sampler = ProcessSampler(child.pid).start()
        budget = self._budget(sims)
        await child.wait(self.args.run_timeout)
        await budget.stop()
        await sampler.stop()
        code = await child.stop()
        if code != 0:
            raise RuntimeError(f"bench.limit exited with {code}:\n{child.log_tail()}")
        summary = orjson.loads(out.read_bytes())
        window = summary["last_at"] - summary["first_at"]
        requests = summary["requests"]
        return Row(
            scenario,
            "limit",
            # Events' worth of PUTs: every event is one PUT per platform.
            requests // PLATFORM_COUNT,
            window,
            requests,
            cpu_per_1k_s=summary["cpu_s"] / (requests / PLATFORM_COUNT) * 1000,
            peak_rss_mib=sampler.peak_rss_mib,
            note="raw PUTs, no Kafka",
            extra={
                "statuses": summary["statuses"],
                "cores": budget.cores(summary["first_at"], summary["last_at"], measured=sampler),
            },
        )

    # --- latency at a tenth of peak ------------------------------------------------------

    async def paced(self, sims: Simulators, rate: float, scenario: str, system: str = "order-sync") -> Row:
        """Events at `rate` per second for --paced-seconds; latency from produce to result received.

        With `system` FLOOR, the echo process stands in for the connector (one result per event).
        """
        label = f"{system.replace(' ', '-')}-paced-{next(self._runs)}"
        count = max(10, int(rate * self.args.paced_seconds))
        events = spread_orders(bench_events(count, next(self._seeds)))
        topics = await Topics.create(self.broker.bootstrap_servers, label)
        if system == FLOOR:
            ready = self.workdir / f"{label}.ready"
            argv = [str(BIN / "python"), "-m", "bench.echo", "--ready", str(ready)]
            child = Child(argv, self._peer_env(sims, topics), self.workdir / f"{label}.log")
            per_event, offset_ms = 1, 0.0
        else:
            child, http_port = self._connector(sims, topics, label)
            per_event, offset_ms = PLATFORM_COUNT, sims.latency_ms
        sampler = ProcessSampler(child.pid).start()
        budget = self._budget(sims)
        live = LiveResults(self.broker.bootstrap_servers, topics)
        try:
            if system == FLOOR:
                await wait_for_file(ready, child)
            else:
                await wait_ready(http_port, child)
            await live.start()
            produced = await produce_paced(self.broker.bootstrap_servers, topics.input, events, rate)
            await live.wait_for(count * per_event, timeout_s=60)
        finally:
            await live.stop()
            await budget.stop()
            await sampler.stop()
            await child.stop()
        results = live.records
        seen = [(r.received_at - produced[r.event_id]) * 1000 - offset_ms for r in results]
        published = [(r.published_at - produced[r.event_id]) * 1000 - offset_ms for r in results]
        first = min(produced.values())
        last = max(r.received_at for r in results)
        cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
        completed = len({r.event_id for r in results})
        what = "produce to result" if system == FLOOR else f"minus the simulators' {offset_ms:g} ms"
        return Row(
            scenario,
            system,
            completed,
            last - first,
            len(results),
            percentile(seen, 50),
            percentile(seen, 99),
            cpu / completed * 1000 if completed else None,
            sampler.peak_rss_mib,
            f"paced at {rate:.0f} events/s; latency {what}",
            {
                "rate": rate,
                "published_p50_ms": percentile(published, 50),
                "published_p99_ms": percentile(published, 99),
                "max_ms": max(seen),
                "cores": budget.cores(first, last, measured=sampler),
            },
        )

    # --- memory under a backlog ------------------------------------------------------------

    async def backlog(self, sims: Simulators, count: int, scenario: str) -> Row:
        label = f"order-sync-backlog-{next(self._runs)}"
        topics = await Topics.create(self.broker.bootstrap_servers, label)
        self.say(f"  producing a backlog of {count} events")
        events = bench_events(count, next(self._seeds))
        produced = await produce_all(self.broker.bootstrap_servers, topics.input, events)
        del events
        child, _ = self._connector(sims, topics, label)
        sampler = ProcessSampler(child.pid, interval_s=0.5).start()
        budget = self._budget(sims)
        started = time.time()
        try:
            committed, done_at = await wait_for_commits(
                self.broker.bootstrap_servers,
                topics,
                produced.ends,
                self.args.backlog_timeout,
                child,
                poll_s=1.0,
            )
        finally:
            await budget.stop()
            await sampler.stop()
            await child.stop()
        samples = [s for s in sampler.samples if s.at <= done_at and s.rss_kib]
        # The working phase: from the first CPU use to the end (excludes interpreter start-up).
        working = [s for s in samples if s.at >= started + 5] or samples
        rss = [s.rss_kib / 1024 for s in working]
        quarter = max(1, len(rss) // 4)
        timeline = [round(s.rss_kib / 1024) for s in samples[:: max(1, len(samples) // 12)]]
        first_quarter = statistics.mean(rss[:quarter])
        last_quarter = statistics.mean(rss[-quarter:])
        window = done_at - started
        events_done = committed
        note = (
            f"RSS over time (MiB): {' '.join(map(str, timeline))}; "
            f"mean first quarter {first_quarter:.0f}, last quarter {last_quarter:.0f}"
        )
        if committed < count:
            note += f"; time-boxed at {self.args.backlog_timeout:g} s: {committed}/{count} events"
        cpu = sampler.samples[-1].cpu_s if sampler.samples else 0.0
        return Row(
            scenario,
            "order-sync",
            events_done,
            window,
            events_done * PLATFORM_COUNT,
            cpu_per_1k_s=cpu / events_done * 1000 if events_done else None,
            peak_rss_mib=sampler.peak_rss_mib,
            note=note,
            extra={
                "rss_timeline_mib": timeline,
                "first_quarter_mib": first_quarter,
                "last_quarter_mib": last_quarter,
                "cores": budget.cores(started, done_at, measured=sampler),
            },
        )

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> None:
        args = self.args
        await self.broker.start()
        try:
            peak_20 = None
            for latency in args.latencies:
                sims = await Simulators.start(latency, self.workdir)
                try:
                    scenario = f"{args.events} events, {latency:g} ms"
                    if "throughput" in args.scenarios:
                        seed = next(self._seeds)
                        events = bench_events(args.events, seed)
                        if "limit" in args.systems:
                            self.say(f"{scenario}: limit (raw PUTs)")
                            self.rows.append(await self.limit_throughput(sims, args.events, scenario))
                            self.report(self.rows[-1])
                        if "order-sync" in args.systems:
                            self.say(f"{scenario}: order-sync")
                            row = await self.order_sync_throughput(sims, events, scenario)
                            self.rows.append(row)
                            self.report(row)
                            if latency == args.paced_latency:
                                peak_20 = row.events_per_s
                        for variant, what in (
                            (ASYNCIO, "on asyncio's loop"),
                            (REPLICAS, "two replicas"),
                            (SPLIT, "its pipelines split over two processes"),
                            (PIPELINE_FLOOR, "floor (bench.floor: Kafka and PUTs only)"),
                            (PIPELINE_FLOOR_ONE, "floor with one consumer group (bench.floor --groups one)"),
                        ):
                            if variant in args.systems:
                                self.say(f"{scenario}: order-sync {what}")
                                row = await self.order_sync_throughput(sims, events, scenario, variant, seed)
                                self.rows.append(row)
                                self.report(row)
                        if "naive" in args.systems:
                            naive_events = bench_events(args.events, next(self._seeds))
                            self.say(f"{scenario}: naive loop (at most {args.naive_seconds:g} s)")
                            self.rows.append(await self.naive_throughput(sims, naive_events, scenario))
                            self.report(self.rows[-1])
                    if "paced" in args.scenarios and latency == args.paced_latency:
                        rate = args.paced_rate or args.paced_share * (peak_20 or 1000)
                        scenario = f"paced, {latency:g} ms"
                        self.say(f"{scenario}: order-sync at {rate:.0f} events/s")
                        self.rows.append(await self.paced(sims, rate, scenario))
                        self.report(self.rows[-1])
                        self.say(f"{scenario}: Kafka floor (bench.echo) at {rate:.0f} events/s")
                        self.rows.append(await self.paced(sims, rate, scenario, FLOOR))
                        self.report(self.rows[-1])
                finally:
                    await sims.stop()
            if "backlog" in args.scenarios and args.backlog:
                sims = await Simulators.start(args.backlog_latency, self.workdir)
                try:
                    scenario = f"backlog {args.backlog}, {args.backlog_latency:g} ms"
                    self.say(f"{scenario}: order-sync")
                    self.rows.append(await self.backlog(sims, args.backlog, scenario))
                    self.report(self.rows[-1])
                finally:
                    await sims.stop()
        finally:
            self.broker.stop()

    def report(self, row: Row) -> None:
        latency = f", p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms" if row.p99_ms is not None else ""
        self.say(
            f"  {row.system}: {row.events} events in {row.window_s:.1f} s = {row.events_per_s:.0f} events/s, "
            f"{row.deliveries_per_s:.0f} deliveries/s{latency}, peak RSS {row.peak_rss_mib or 0:.0f} MiB"
            + (f" ({row.note})" if row.note else "")
        )


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratios(rows: list[Row]) -> list[str]:
    """events/s against the naive loop and the limit; CPU per event against the limit's."""
    lines = []
    by = {(r.scenario, r.system): r for r in rows}
    for scenario, system in dict.fromkeys((r.scenario, r.system) for r in rows):
        ours = by[(scenario, system)]
        if not system.startswith(("order-sync", PIPELINE_FLOOR)):
            continue
        for peer in ("naive", "limit"):
            other = by.get((scenario, peer))
            if other is not None and other.events_per_s:
                lines.append(
                    f"- {scenario}: {system} ÷ {peer} = {ours.events_per_s / other.events_per_s:.2f}x "
                    f"({ours.events_per_s:,.0f} vs {other.events_per_s:,.0f} events/s)"
                )
        limit = by.get((scenario, "limit"))
        if limit is not None and limit.cpu_per_1k_s and ours.cpu_per_1k_s:
            times = ours.cpu_per_1k_s / limit.cpu_per_1k_s
            lines.append(
                f"- {scenario}: {system} CPU per event ÷ limit's = {times:.2f}x "
                f"({ours.cpu_per_1k_s:.2f} vs {limit.cpu_per_1k_s:.2f} CPU s / 1000 events)"
            )
    return lines


def render(rows: list[Row], info: dict[str, str], args: argparse.Namespace) -> str:
    out = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M')}: `python -m bench.run {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory']} RAM, "
        f"Python {info['python']}, Linux {info['kernel']}. Load average (1 min) before the run "
        f"{info.get('load_before', '?')}, after it {info.get('load_after', '?')}: the machine is shared.",
        "",
        "| scenario | system | events | events/s | deliveries/s | p50 ms | p99 ms | CPU s / 1000 events "
        "| peak RSS MiB | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r.scenario} | {r.system} | {r.events:,} | {_fmt(r.events_per_s)} "
            f"| {_fmt(r.deliveries_per_s)} | {_fmt(r.p50_ms, 1)} | {_fmt(r.p99_ms, 1)} "
            f"| {_fmt(r.cpu_per_1k_s, 2)} | {_fmt(r.peak_rss_mib)} | {r.note} |"
        )
    out += ["", "Ratios:", "", *ratios(rows)]
    out += [
        "",
        "Where the CPU went during each measured window, in busy cores (of "
        f"{info['cpus']}): the measured process, the simulators, the broker, this bench, and "
        "everything else on the machine (other work, the kernel):",
        "",
        "| scenario | system | measured | simulators | broker | bench | other | machine |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cores = r.extra.get("cores")
        if isinstance(cores, dict):
            cells = " | ".join(
                f"{cores.get(name, 0):.2f}" for name in ("measured", "simulators", "broker", "bench", "other")
            )
            out.append(f"| {r.scenario} | {r.system} | {cells} | {cores.get('machine', 0):.2f} |")
    return "\n".join(out) + "\n"


def write_readme(path: Path, text: str) -> None:
    current = (
        path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{START_MARK}\n{END_MARK}\n"
    )
    if START_MARK not in current:
        current += f"\n{START_MARK}\n{END_MARK}\n"
    head, _, rest = current.partition(START_MARK)
    _, _, tail = rest.partition(END_MARK)
    path.write_text(f"{head}{START_MARK}\n{text}{END_MARK}{tail}", encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    parser.add_argument(
        "--latencies",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.0, 20.0],
        help="ms, e.g. 0,20",
    )
    parser.add_argument(
        "--systems",
        type=lambda s: s.split(","),
        default=list(SYSTEMS),
        help=f"subset of {','.join(SYSTEMS)}, or {ASYNCIO}, {REPLICAS}, {SPLIT}",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda s: s.split(","),
        default=list(SCENARIOS),
        help=f"subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument("--naive-seconds", type=float, default=40, help="time box of each naive run")
    parser.add_argument("--paced-latency", type=float, default=20.0)
    parser.add_argument("--paced-share", type=float, default=0.1, help="share of order-sync's measured peak")
    parser.add_argument("--paced-rate", type=float, default=None, help="events/s (overrides --paced-share)")
    parser.add_argument("--paced-seconds", type=float, default=30)
    parser.add_argument(
        "--backlog", type=int, default=100_000, help="events in the memory scenario (0: skip)"
    )
    parser.add_argument("--backlog-latency", type=float, default=0.0)
    parser.add_argument("--backlog-timeout", type=float, default=330)
    parser.add_argument("--run-timeout", type=float, default=300, help="at most this long per throughput run")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each order-sync run into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, stores)")
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=None,
        help="consumer session timeout of every measured process (default: the connector's own)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave README and JSON alone")
    return parser.parse_args(argv)


async def bench_main(args: argparse.Namespace) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="order-sync-bench-"))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    try:
        await bench.run()
    except BaseException:
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return bench.rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = asyncio.run(bench_main(args))
    info = {**machine(), "load_before": load_before, "load_after": f"{os.getloadavg()[0]:.2f}"}
    text = render(rows, info, args)
    print(text)
    if not args.no_write:
        write_readme(args.readme, text)
        document = {"machine": info, "rows": [{**asdict(r), "events_per_s": r.events_per_s} for r in rows]}
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
