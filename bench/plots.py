"""PNG plots of the last ``make bench`` and ``make bench-core`` runs (bench/results/serve.json,
bench/results/core.json) into docs/img/.

    python -m bench.plots

throughput.png: requests/s vs concurrency, lossd beside its floor, its decode floor and (on the
V2 transports) its peers, one panel per transport (small requests);
latency.png: p50 and p99 of the same runs; bandwidth.png: MB/s vs payload size (mse, lossd and
its floor, gRPC and REST); batch.png: lossd's mean batch size vs concurrency (small requests);
core_vs_torch.png: core/torch time per loss at 1e6 elements.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402

from bench.peers import PEERS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve.json"
CORE = ROOT / "bench" / "results" / "core.json"
IMG = ROOT / "docs" / "img"


def _small(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row["scenario"].startswith("small ") and "," not in row["scenario"]:
            out.setdefault(row["transport"], []).append(row)
    return out


def throughput(rows: list[dict]) -> None:
    """One panel per transport: lossd, its floor and decode floor, and each peer that ran."""
    small = _small(rows)
    fig, axes = plt.subplots(1, len(small), figsize=(4.2 * len(small), 4.2), sharey=True,
                             squeeze=False)
    for ax, (transport, runs) in zip(axes[0], small.items()):
        runs = sorted(runs, key=lambda r: r["concurrency"])
        conc = [r["concurrency"] for r in runs]
        ax.plot(conc, [r["lossd"]["rps"] for r in runs], "o-", color="C0", label="lossd")
        ax.plot(conc, [r["floor"]["rps"] for r in runs], "o--", color="black", alpha=0.5,
                label="floor")
        ax.plot(conc, [r["decode"]["rps"] for r in runs], "x:", color="black", alpha=0.7,
                label="decode floor")
        for peer, color in zip(PEERS, ("C1", "C2", "C3")):
            points = [(r["concurrency"], r["peers"][peer.name]["rps"]) for r in runs
                      if peer.name in r.get("peers", {})]
            if points:
                ax.plot(*zip(*points), "s-", color=color, alpha=0.8, label=peer.label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # the REST floor is an order of magnitude above the rest
        ax.set_xlabel("concurrent callers")
        ax.set_title(transport)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("requests / s")
    fig.suptitle("cross_entropy 32x10: lossd, its floors and its peers")
    fig.tight_layout()
    fig.savefig(IMG / "throughput.png", dpi=110)


def batch(rows: list[dict]) -> None:
    """lossd's mean batch size (lossd_batch_size over the median round) vs concurrency."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (transport, runs), color in zip(_small(rows).items(), ("C0", "C1", "C2", "C3")):
        points = [(r["concurrency"], r["lossd"]["batch_mean"])
                  for r in sorted(runs, key=lambda r: r["concurrency"])
                  if r["lossd"].get("batch_mean") is not None]
        if points:
            ax.plot(*zip(*points), "o-", color=color, label=f"lossd {transport}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("mean requests per computed batch")
    ax.set_title("cross_entropy 32x10: lossd's batch size under load")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "batch.png", dpi=110)


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
    """MB/s received vs request size: mse at every size over gRPC and REST (b64)."""
    sized = [r for r in rows if r["scenario"].startswith(("size ", "large "))
             and r["transport"] in ("grpc", "rest")]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for transport, color in (("grpc", "C0"), ("rest", "C2")):
        runs = sorted((r for r in sized if r["transport"] == transport),
                      key=lambda r: r["lossd"]["payload_bytes"])
        if not runs:
            continue
        size = [r["lossd"]["payload_bytes"] for r in runs]
        for who, style in (("lossd", "o-"), ("floor", "o--")):
            ax.plot(size, [r[who]["bytes"] / r[who]["seconds"] / 1e6 for r in runs], style,
                    color=color, alpha=1.0 if who == "lossd" else 0.5,
                    label=f"{who} {transport}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("request size, bytes (mse, two float32 tensors)")
    ax.set_ylabel("MB/s received")
    ax.set_title("payload throughput vs request size, concurrency 2")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "bandwidth.png", dpi=110)


def core_vs_torch(core: dict) -> None:
    """core/torch time per loss at the largest size (below 1: the core is faster)."""
    rows = core["rows"]
    largest = max(r["size"] for r in rows)
    rows = [r for r in rows if r["size"] == largest]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["core"] / r["torch"] for r in rows], width=0.4,
           label="loss")
    ax.bar([i + 0.2 for i in x], [r["core_grad"] / r["torch_grad"] for r in rows], width=0.4,
           label="loss + gradient")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), [r["loss"] for r in rows], rotation=75, fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_ylabel("core time / torch time")
    ax.set_title(f"lossd's NumPy core vs torch CPU, about {largest:.0e} elements, "
                 f"{core['dtype']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMG / "core_vs_torch.png", dpi=110)


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    rows = json.loads(RESULTS.read_text())
    throughput(rows)
    latency(rows)
    bandwidth(rows)
    batch(rows)
    if CORE.exists():
        core_vs_torch(json.loads(CORE.read_text()))
    print(f"wrote {', '.join(p.name for p in sorted(IMG.glob('*.png')))} to {IMG}")


if __name__ == "__main__":
    main()
