"""PNG plots of the last ``make bench`` run (bench/results/serve.json) into docs/img/.

    python -m bench.plots

throughput.png: requests/s vs concurrency, lossd beside its floor, per transport (small requests);
latency.png: p50 and p99 of the same runs; bandwidth.png: MB/s of the large requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve.json"
IMG = ROOT / "docs" / "img"


def _small(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row["scenario"].startswith("small ") and "," not in row["scenario"]:
            out.setdefault(row["transport"], []).append(row)
    return out


def throughput(rows: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (transport, runs), color in zip(_small(rows).items(), ("C0", "C1", "C2", "C3")):
        runs = sorted(runs, key=lambda r: r["concurrency"])
        conc = [r["concurrency"] for r in runs]
        ax.plot(conc, [r["lossd"]["rps"] for r in runs], "o-", color=color,
                label=f"lossd {transport}")
        ax.plot(conc, [r["floor"]["rps"] for r in runs], "o--", color=color, alpha=0.5,
                label=f"floor {transport}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # the REST floor is an order of magnitude above the rest
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("requests / s")
    ax.set_title("cross_entropy 32x10: lossd vs the bare transport floor")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "throughput.png", dpi=110)


def latency(rows: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels, p50, p99 = [], [], []
    for transport, runs in _small(rows).items():
        for r in sorted(runs, key=lambda r: r["concurrency"]):
            for who in ("lossd", "floor"):
                labels.append(f"{who}\n{transport}\nc={r['concurrency']}")
                p50.append(r[who]["p50_ms"])
                p99.append(r[who]["p99_ms"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], p99, width=0.4, label="p99")
    ax.set_xticks(list(x), labels, fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("latency percentiles, small requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "latency.png", dpi=110)


def bandwidth(rows: list[dict]) -> None:
    large = [r for r in rows if r["scenario"].startswith(("large", "16M"))]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [f"{r['transport']}\n{r['workload']}" for r in large]
    x = range(len(large))

    def mbs(r: dict) -> float:
        return r["bytes"] / r["seconds"] / 1e6
    ax.bar([i - 0.2 for i in x], [mbs(r["lossd"]) for r in large], width=0.4, label="lossd")
    ax.bar([i + 0.2 for i in x], [mbs(r["floor"]) for r in large], width=0.4, label="floor")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("MB/s received")
    ax.set_title("large requests: payload throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "bandwidth.png", dpi=110)


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    rows = json.loads(RESULTS.read_text())
    throughput(rows)
    latency(rows)
    bandwidth(rows)
    print(f"wrote {', '.join(p.name for p in sorted(IMG.glob('*.png')))} to {IMG}")


if __name__ == "__main__":
    main()
