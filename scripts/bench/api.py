#!/usr/bin/env python
"""Load test of the API: N requests from C concurrent clients to 127.0.0.1, then it stops by itself.

    .venv/bin/python scripts/bench/api.py [--requests 2000] [--clients 20] [--url http://127.0.0.1:PORT]

Without ``--url`` it starts ``cqube-spark serve`` itself on a free port over a small published fixture in a
temporary data root (Keycloak must be running: ``scripts/services.sh start keycloak``), gets a real token for
the district viewer ``viewer_d1`` and mixes the read paths a dashboard uses: ``/download/files`` (scope filter
over metadata.json), ``/download/metadata``, ``/download/uri`` (a signed link) and ``/health`` — every call
authenticated except health. Prints p50 / p90 / p99 / max latency in ms, requests/s and the error count;
exit 1 if any request failed.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
KC = f"http://127.0.0.1:{os.environ.get('CQUBE_KEYCLOAK_PORT', '8180')}/realms/cqube"


def token(user: str) -> str:
    r = requests.post(f"{KC}/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "cqube-api", "client_secret": "cqube-api-secret",
        "username": user, "password": f"{user}-pw"})
    r.raise_for_status()
    return r.json()["access_token"]


def fixture(root: Path) -> None:
    run = root / "output" / "_runs" / "b1"
    files = []
    for d in range(1, 5):
        for level in ("district", "block"):
            path = f"student_attendance/overall/{level}_{d}.json"
            rows = [{"district_id": f"750{dd}", "block_id": f"750{dd}0{b}", "v": b}
                    for dd in range(1, 5) for b in range(1, 20)]
            (run / path).parent.mkdir(parents=True, exist_ok=True)
            (run / path).write_text(json.dumps({"data": rows}))
            files.append({"path": path, "kpi": "student_attendance", "level": level, "format": "json"})
    (run / "metadata.json").write_text(json.dumps({"files": files, "run_id": "b1"}))
    (root / "output" / "_current.json").write_text(json.dumps({"prefix": "_runs/b1", "run_id": "b1"}))


def start(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, CQUBE_DATA_ROOT=str(root), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "cqube_spark.cli", "serve", "--port", str(port)], env=env,
                            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("the API did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--url")
    args = ap.parse_args()
    proc, tmp = None, None
    url = args.url
    if not url:
        tmp = tempfile.TemporaryDirectory(prefix="cqube-api-bench-")
        fixture(Path(tmp.name))
        proc, url = start(Path(tmp.name))
    auth = {"Authorization": f"Bearer {token('viewer_d1')}"}
    paths = [("/download/files", {}), ("/download/metadata", {}),
             ("/download/uri", {"path": "student_attendance/overall/block_1.json"}), ("/health", {})]
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def client():
        s = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            path, params = paths[i % len(paths)]
            t0 = time.perf_counter()
            try:
                r = s.get(url + path, params=params, headers=auth, timeout=30)
                ok = r.status_code == 200
                why = f"{path}: {r.status_code}"
            except requests.RequestException as e:
                ok, why = False, f"{path}: {type(e).__name__}"
            dt_ms = (time.perf_counter() - t0) * 1000
            with lock:
                lat.append(dt_ms)
                if not ok:
                    errors.append(why)

    try:
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        if tmp:
            tmp.cleanup()
    q = statistics.quantiles(lat, n=100)
    print(f"{len(lat)} requests, {args.clients} clients, {wall:.1f} s, {len(lat) / wall:.0f} req/s")
    print(f"latency ms: p50 {q[49]:.1f}  p90 {q[89]:.1f}  p99 {q[98]:.1f}  max {max(lat):.1f}")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
