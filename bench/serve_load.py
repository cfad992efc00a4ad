"""Benchmark: ``cartola serve`` under concurrent keep-alive clients, 1 worker against N.

It starts ``python -m cartola.serving.server --workers W`` on 127.0.0.1 for W = 1 and W =
``--workers`` (default one per core), both at once, waits until every worker has loaded the
model, then, per request size (``--rows``: 1 and 10 rows) and client count (``--clients``:
1, 16, 64, 256), runs a load generator in a SEPARATE process (``--generate``: asyncio on
uvloop, raw keep-alive sockets, a prebuilt request; much cheaper per request than the server,
so the generator is not what saturates). Each client sends its next request when the last
answer arrives; a 503 (load shed) makes it wait the ``Retry-After`` seconds, as a polite
client does. Per level it prints answered requests/s, p50, p99 and max latency of the 200s,
errors (anything but 200 and 503: resets, timeouts, other statuses) and 503s; then the
throughput ratio N workers / 1 worker at each level. Each level is measured in ``--rounds``
rounds, the two servers taking turns, so a slow spell of the machine falls on both:
requests/s is the median round's, latencies are pooled. The goals: no errors but 503s, p99
<= 100 ms at 64 clients, N=2 workers >= 1.6x one.

    python bench/serve_load.py [--model-dir serving_model/cartola_pro] [--rounds 3]

The generator shares the machine with the server (and, here, with other jobs): read the
ratios, measured side by side in one run, rather than the absolute figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------------------------
# The load generator (its own process).

async def _client(host: str, port: int, request: bytes, deadline: float, warm_until: float,
                  out: dict) -> None:
    """One keep-alive client until ``deadline``; records answers after ``warm_until``."""
    reader = writer = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
                started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
            await reader.readexactly(length)
            elapsed = time.monotonic() - started
            close = re.search(rb"(?i)\r\nconnection: *close", head) is not None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TypeError, ValueError) as err:
            if started >= warm_until:
                out["errors"].append(type(err).__name__)
            writer = None
            await asyncio.sleep(0.01)
            continue
        if started >= warm_until:
            if status == 200:
                out["latency"].append(elapsed)
            elif status == 503:
                out["shed"] += 1
            else:
                out["errors"].append(f"HTTP {status}")
        if close:
            writer.close()
            writer = None
        if status == 503:
            retry = re.search(rb"(?i)retry-after: *(\d+)", head)
            await asyncio.sleep(float(retry[1]) if retry else 1.0)


async def _generate(url: str, path: str, body: bytes, clients: int, seconds: float,
                    warmup: float) -> dict:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    out = {"latency": [], "errors": [], "shed": 0}
    now = time.monotonic()
    await asyncio.gather(*(_client(host, int(port), request, now + warmup + seconds,
                                   now + warmup, out) for _ in range(clients)))
    return out


def generate(args: argparse.Namespace) -> int:
    """``--generate``: run one level and print its raw results as JSON on stdout."""
    try:
        import uvloop  # pylint: disable=import-outside-toplevel
        uvloop.install()
    except ImportError:
        pass
    body = Path(args.body).read_bytes()
    out = asyncio.run(_generate(args.url, args.path, body, args.clients, args.seconds,
                                args.warmup))
    out["seconds"] = args.seconds
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------------------------
# The bench (starts servers and generators).

def _start_server(model_dir: Path, name: str, workers: int,
                  max_inflight: Optional[int]) -> (subprocess.Popen, str):
    command = [sys.executable, "-m", "cartola.serving.server", "--model-dir", str(model_dir),
               "--model-name", name, "--port", "0", "--no-request-log", "--poll-seconds", "60",
               "--workers", str(workers)]
    if max_inflight is not None:
        command += ["--max-inflight", str(max_inflight)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.STDOUT, text=True)
    lines: List[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        urls = [m[1] for m in map(re.compile(r"listening on (\S+) ").search, lines) if m]
        if urls and sum("ready: version" in line for line in lines) >= workers:
            return proc, urls[0]
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench: the server did not start:\n" + "".join(lines[-20:]))


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _level(url: str, path: str, body_file: str, clients: int, args) -> dict:
    """One measured level: the generator's raw answers (latencies, errors, 503s)."""
    result = subprocess.run(
        [sys.executable, __file__, "--generate", "--url", url, "--path", path, "--body",
         body_file, "--clients", str(clients), "--seconds", str(args.seconds),
         "--warmup", str(args.warmup)], capture_output=True, text=True, check=True,
        timeout=args.seconds + args.warmup + 120)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _summary(rounds: List[dict]) -> Dict[str, float]:
    """A level over its rounds: the median round's requests/s; latencies pooled."""
    latency = sorted(value for out in rounds for value in out["latency"])
    rates = sorted(len(out["latency"]) / out["seconds"] for out in rounds)
    errors = [kind for out in rounds for kind in out["errors"]]

    def pct(share):
        return latency[min(len(latency) - 1, int(share * len(latency)))] * 1000 if latency else 0

    return {"rps": rates[len(rates) // 2], "p50": pct(0.50), "p99": pct(0.99),
            "max": latency[-1] * 1000 if latency else 0.0, "errors": len(errors),
            "shed": sum(out["shed"] for out in rounds), "kinds": sorted(set(errors))[:3]}


def _measure(urls: Dict[int, str], path: str, bodies: Dict[int, str], clients: List[int],
             args) -> Dict[tuple, Dict[str, float]]:
    """Every level (request size, clients) on every server (workers: URL), in rounds."""
    results = {}
    for size, body in bodies.items():
        for count in clients:
            rounds: Dict[int, List[dict]] = {workers: [] for workers in urls}
            for _ in range(args.rounds):
                for workers, url in urls.items():
                    rounds[workers].append(_level(url, path, body, count, args))
            for workers, measured in rounds.items():
                results[workers, size, count] = _summary(measured)
    return results


def _rows(config, count: int) -> List[dict]:
    # pylint: disable=import-outside-toplevel
    import pandas as pd
    from cartola.data.spans import latest_folder
    files = sorted(latest_folder(config.data_dir, config.span_pattern).glob("*.csv"))
    if not files:
        raise SystemExit(f"bench: no CSV under {config.data_dir} to take rows from")
    frame = pd.read_csv(files[0], nrows=count, usecols=list(config.numeric_features))
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in record.items()} for record in frame.to_dict("records")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model-dir", help="folder of versions (default: config serving dir)")
    parser.add_argument("--workers", type=int, help="the N to compare with 1 (default: cores)")
    parser.add_argument("--max-inflight", type=int,
                        help="per-worker bound (default: config serving_max_inflight)")
    parser.add_argument("--clients", default="1,16,64,256")
    parser.add_argument("--rows", default="1,10", help="rows per request, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per level, the servers taking turns (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured, per round")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    """Run the bench (or, with ``--generate``, one level of load) and print the tables."""
    args = _parser().parse_args()
    if args.generate:
        args.clients = int(args.clients)
        return generate(args)
    # pylint: disable=import-outside-toplevel
    import tempfile
    from cartola.config import load_config
    from cartola.serving.workers import cores
    from cartola.published.versions import model_versions
    config = load_config()
    model_dir = Path(args.model_dir) if args.model_dir else config.model_serving_dir
    if not model_versions(model_dir):
        raise SystemExit(f"bench: no model version under {model_dir}; run `cartola run` "
                         "first or pass --model-dir")
    workers_n = args.workers or cores()
    clients = [int(c) for c in args.clients.split(",")]
    sizes = [int(r) for r in args.rows.split(",")]
    rows = _rows(config, max(sizes))
    path = f"/v1/models/{config.model_name}:predict"
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
        bodies = {}
        for size in sizes:
            bodies[size] = str(Path(folder) / f"{size}.json")
            Path(bodies[size]).write_text(json.dumps(
                {"signature_name": "predict_raw", "instances": rows[:size]}), encoding="utf-8")
        servers = {}
        try:  # both servers up at once; each level's rounds alternate between them
            for workers in sorted({1, workers_n}):
                servers[workers] = _start_server(model_dir, config.model_name, workers,
                                                 args.max_inflight)
            results = _measure({w: url for w, (_, url) in servers.items()}, path, bodies,
                               clients, args)
        finally:
            for proc, _ in servers.values():
                _stop(proc)
    _print(results, f"model {model_dir}; {os.cpu_count()} CPUs (shared with the load generator); "
          f"{args.rounds} rounds of {args.seconds:g} s per level after {args.warmup:g} s "
          "warm-up each, the two servers taking turns; max-inflight "
          f"{args.max_inflight if args.max_inflight is not None else config.serving_max_inflight}"
          " per worker", workers_n, clients, sizes)
    return 0


def _print(results, header: str, workers_n: int, clients: List[int], sizes: List[int]) -> None:
    print(header)
    print(f"{'workers':>7} {'rows':>4} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>6} {'503s':>6}")
    for (workers, size, count), r in sorted(results.items()):
        print(f"{workers:>7} {size:>4} {count:>7} {r['rps']:>8.0f} {r['p50']:>7.1f} "
              f"{r['p99']:>7.1f} {r['max']:>7.1f} {r['errors']:>6} {r['shed']:>6}"
              + (f"  {r['kinds']}" if r["kinds"] else ""))
    if workers_n > 1:
        print(f"throughput, {workers_n} workers / 1 worker:")
        for size in sizes:
            ratios = [(count, results[workers_n, size, count]["rps"]
                       / max(results[1, size, count]["rps"], 1e-9)) for count in clients]
            print(f"  {size:>2}-row requests: "
                  + ", ".join(f"{count} clients x{ratio:.2f}" for count, ratio in ratios))


if __name__ == "__main__":
    sys.exit(main())
