"""A real Prometheus server for tests: started on a free port, scraping given targets, queried over HTTP."""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from connector.devtools.broker import free_port


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job; `labels` are target labels attached to every series scraped from it."""

    job: str
    address: str
    labels: dict[str, str]


class PrometheusServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, targets: list[ScrapeTarget], rule_groups: list[dict[str, Any]], interval_s: float
    ) -> None:
        """Scrape and evaluate every `interval_s`; `rule_groups` are loaded as its rules."""
        interval = f"{int(interval_s * 1000)}ms"
        (self.directory / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}), encoding="utf-8")
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {"job_name": t.job, "static_configs": [{"targets": [t.address], "labels": t.labels}]}
                for t in targets
            ],
        }
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=log,
            cwd=self.directory,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def _get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, params=params) as response,
        ):
            body = await response.json()
            assert body["status"] == "success", body
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector query, evaluated now: the series it returns."""
        data = await self._get("/api/v1/query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        result: list[dict[str, Any]] = (
            data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]
        )
        return result

    async def label_values(self, label: str, selector: str) -> list[str]:
        """What Grafana's `label_values(selector, label)` offers."""
        values: list[str] = await self._get(f"/api/v1/label/{label}/values", **{"match[]": selector})
        return values

    async def rules(self) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await check():
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{self.log_tail()}")
            await asyncio.sleep(0.2)

    async def wait_ready(self, timeout_s: float = 30) -> None:
        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(self.url + "/-/ready") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await self.wait_until(ready, timeout_s, "Prometheus to be ready")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def has_finite_value(series: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in series)
