"""A bounded load on a running server: creates, polls and cancels from client threads.

Each client thread makes its own threads and runs: it creates a run (a third of them
with a slow executor step, so that cancels land on running work), cancels every fourth,
and polls each a few times before moving on. Every request is timed. At the end it waits for every
run it created to reach a terminal status and reports requests per second, latency
percentiles and any 5xx. Requests go to the given base URL only (loopback here), and
both the number of requests and the time are bounded.

    python examples/openai_server/loadgen.py --url http://127.0.0.1:8000/v1 --requests 4000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

TERMINAL = {"completed", "failed", "cancelled", "expired"}


@dataclass
class Report:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    final: dict[str, int] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    #: The messages of the 4xx answers (a cancel that came after the run had ended).
    refusals: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def lines(self) -> list[str]:
        rate = self.requests / self.seconds
        ms = [f"p{p} {self.percentile(p) * 1e3:.1f}" for p in (50, 90, 99)]
        ms += [f"max {max(self.latencies) * 1e3:.1f}"]
        ms += [f"mean {statistics.mean(self.latencies) * 1e3:.1f}"]
        return [
            f"{self.requests} requests in {self.seconds:.2f} s: {rate:.0f} requests/s",
            "latency ms: " + ", ".join(ms),
            "HTTP statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())),
            "runs ended: " + ", ".join(f"{s} {n}" for s, n in sorted(self.final.items())),
        ]


def run_load(url: str, requests: int = 2000, clients: int = 8, deadline: float = 120.0) -> Report:
    report = Report()
    lock = threading.Lock()
    created: list[tuple[str, str]] = []
    budget = [requests]
    stop_at = time.monotonic() + deadline

    def take() -> bool:
        with lock:
            budget[0] -= 1
            return budget[0] >= 0 and time.monotonic() < stop_at

    def call(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
        t = time.perf_counter()
        response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t
        with lock:
            report.latencies.append(elapsed)
            report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
            if 400 <= response.status_code < 500:
                report.refusals.append(response.json()["error"]["message"])
        return response

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = 0
            while take():
                i += 1
                thread = call(client, "POST", "/threads").json()["id"]
                if not take():
                    return
                metadata = {"delay": "0.3"} if i % 3 == 0 else {}
                run = call(
                    client,
                    "POST",
                    f"/threads/{thread}/runs",
                    json={"assistant_id": "asst_load", "metadata": metadata},
                ).json()
                with lock:
                    created.append((thread, run["id"]))
                cancel = i % 4 == 0
                polls = 0
                # A few requests per run, then on to the next: the settling below
                # checks that every run ends even when nobody is watching it.
                while run["status"] not in TERMINAL and polls < 3 and take():
                    if cancel and run["status"] in ("queued", "in_progress"):
                        response = call(
                            client, "POST", f"/threads/{thread}/runs/{run['id']}/cancel"
                        )
                        cancel = False
                    else:
                        response = call(client, "GET", f"/threads/{thread}/runs/{run['id']}")
                        polls += 1
                    run = response.json() if response.status_code == 200 else run

    t = time.perf_counter()
    workers = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    report.seconds = time.perf_counter() - t
    report.requests = len(report.latencies)

    with httpx.Client(base_url=url, timeout=30) as client:  # every run must end
        settle_by = time.monotonic() + 60
        for thread, run_id in created:
            while True:
                status = client.get(f"/threads/{thread}/runs/{run_id}").json()["status"]
                if status in TERMINAL or time.monotonic() > settle_by:
                    break
                time.sleep(0.05)
            if status in TERMINAL:
                report.final[status] = report.final.get(status, 0) + 1
            else:
                report.unfinished.append(run_id)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="A bounded load on a runs server.")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    for line in run_load(args.url, args.requests, args.clients).lines():
        print(line)


if __name__ == "__main__":
    main()
