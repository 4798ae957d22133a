"""Draws the benchmark plot from paywatch-bench JSON files.

Usage: python3 scripts/bench-plot.py BENCH_DIR

Reads BENCH_DIR/sweep/steady-rate-*.json (latency percentiles against the
insert rate) and BENCH_DIR/sweep/idle-conns-*.json (server memory against
idle connections), and writes BENCH_DIR/plot.png.
"""

import json
import pathlib
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(directory, pattern):
    runs = [json.loads(path.read_text()) for path in sorted(directory.glob(pattern))]
    if not runs:
        sys.exit(f"bench-plot: no {pattern} in {directory}")
    return runs


def latency_panel(axis, runs):
    runs = sorted(runs, key=lambda run: run["insert_rate"])
    rates = [run["insert_rate"] for run in runs]
    for key, label in [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9")]:
        axis.plot(rates, [run["latency_ms"][key] for run in runs], marker="o", label=label)
    ceilings = [
        run["ceiling"]["inserts_per_s_with_notify_trigger"]
        for run in runs
        if run["ceiling"]["inserts_per_s_with_notify_trigger"]
    ]
    if ceilings:
        ceiling = statistics.median(ceilings)
        axis.axvline(ceiling, color="grey", linestyle="--")
        axis.text(ceiling, axis.get_ylim()[1], " NOTIFY ceiling", color="grey", va="top")
    for target, label in [(0.5, "p50 target"), (1.5, "p99 target"), (5.0, "p99.9 target")]:
        axis.scatter([1500], [target], marker="_", s=300, color="black")
        axis.annotate(label, (1500, target), textcoords="offset points", xytext=(8, -3), fontsize=7)
    axis.set_yscale("log")
    axis.set_xlabel("payments committed per second")
    axis.set_ylabel("COMMIT to client, ms")
    clients = runs[0]["clients"]
    axis.set_title(f"Latency vs rate ({clients} clients, {runs[0]['rooms']} rooms)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()


def memory_panel(axis, runs):
    runs = sorted(runs, key=lambda run: run["clients"])
    clients = [run["clients"] for run in runs]
    per_connection = [run["server"]["rss_per_connection_kb"] for run in runs]
    total_mb = [
        (run["server"]["rss_connected_kb"] - run["server"]["rss_idle_kb"]) / 1024 for run in runs
    ]
    axis.plot(clients, per_connection, marker="o", color="tab:blue", label="KB per connection")
    axis.axhline(4.0, color="tab:blue", linestyle="--", alpha=0.5, label="4 KB target")
    axis.set_ylim(bottom=0)
    axis.set_xlabel("idle WebSocket connections")
    axis.set_ylabel("RSS above an idle server, KB per connection", color="tab:blue")
    total = axis.twinx()
    total.plot(clients, total_mb, marker="s", color="tab:orange", label="MB in all")
    total.set_ylim(bottom=0)
    total.set_ylabel("RSS above an idle server, MB", color="tab:orange")
    axis.set_title("Memory vs connections")
    axis.grid(True, alpha=0.3)
    lines = axis.get_legend_handles_labels()
    more = total.get_legend_handles_labels()
    axis.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = pathlib.Path(sys.argv[1])
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    latency_panel(left, load(directory / "sweep", "steady-rate-*.json"))
    memory_panel(right, load(directory / "sweep", "idle-conns-*.json"))
    figure.tight_layout()
    out = directory / "plot.png"
    figure.savefig(out, dpi=110)
    print(f"bench-plot: wrote {out}")


if __name__ == "__main__":
    main()
