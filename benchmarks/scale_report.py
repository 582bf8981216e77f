"""The ``## Scale`` section of docs/benchmarks.md and docs/scale.png, from scale.py's results.

Every run's summary is kept in an HTML comment inside the section, so a run at another N adds
its row and the plot is redrawn from all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RESULTS = re.compile(r"<!-- scale-results\n(.*?)\n-->", re.DOTALL)
SECTION = re.compile(r"^## Scale\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)


def row(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of one run that the table and the plot show."""
    to_ready = result["requests"]["to_ready"]
    rollout = result["requests"]["rollout"]
    idle = result["requests"]["idle"]
    n = result["models"]
    verbs = to_ready["by_verb"]
    skipped = result["rollout"].get("skipped", False)
    return {
        "models": n,
        "gpu_nodes": result["gpu_nodes"],
        "ready_all_s": result["ready"]["total_seconds"],
        "ready_p50_s": result["ready"].get("p50"),
        "ready_p95_s": result["ready"].get("p95"),
        "all_ready": result["ready"]["all"],
        "requests_per_model": to_ready["per_model"],
        "writes_per_model": to_ready["writes_per_model"],
        "verbs_per_model": {k: round(v / n, 2) for k, v in verbs.items()},
        "events_per_model": round(to_ready["by_verb_resource"].get("create events", 0) / n, 2),
        "status_patches_per_model": round(
            to_ready["by_verb_resource"].get("patch models/status", 0) / n, 2
        ),
        "idle_requests_per_min": idle["requests_per_min"],
        "idle_writes_per_min": idle["writes_per_min"],
        "idle_lists_per_min": idle["lists_per_min"],
        "idle_seconds": idle["seconds"],
        "resync_seconds": result["resync_seconds"],
        "peak_rss_mb": result["operator"]["peak_rss_mb"],
        "cpu_s_to_ready": result["operator"]["cpu_seconds_to_ready"],
        "cpu_ms_per_model": result["operator"]["cpu_ms_per_model_to_ready"],
        "rollout_all_s": result["rollout"]["total_seconds"],
        "rollout_p50_s": result["rollout"].get("p50"),
        "rollout_p95_s": result["rollout"].get("p95"),
        "all_rolled": result["rollout"]["all"],
        "rollout_requests_per_model": None if skipped else rollout["per_model"],
        "rollout_writes_per_model": None if skipped else rollout["writes_per_model"],
        "apiserver_cpu_s": result["cluster_cpu_seconds"].get("kube-apiserver"),
        "load_before": result["machine_before"]["load"],
        "load_after": result["machine_after"]["load"],
        "date": result["machine_before"]["date"],
        "cpus": result["machine_before"]["cpus"],
        "memory_gib": result["machine_before"]["memory_gib"],
        "python": result["machine_before"]["python"],
    }


def _verbs(verbs: dict[str, float]) -> str:
    order = ("get", "list", "create", "patch", "delete")
    return " / ".join(f"{verbs.get(v, 0):g}" for v in order)


HEADER = (
    "Models",
    "all Ready",
    "per Model p50 / p95",
    "requests / Model to Ready (get / list / create / patch / delete)",
    "writes / Model (Events, status patches)",
    "idle req/min (writes, lists)",
    "peak RSS",
    "operator CPU to Ready",
    "revision rolled across all",
    "rollout p50 / p95",
    "rollout writes / Model",
)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table, one row per N."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        ready = f"{r['ready_all_s']} s" + ("" if r["all_ready"] else " (not all)")
        if r["rollout_all_s"] is None:
            rolled, rolled_pct, rolled_writes = "not run", "", ""
        else:
            rolled = f"{r['rollout_all_s']} s" + ("" if r["all_rolled"] else " (not all)")
            rolled_pct = f"{r['rollout_p50_s']} / {r['rollout_p95_s']} s"
            rolled_writes = str(r["rollout_writes_per_model"])
        cells = (
            str(r["models"]),
            ready,
            f"{r['ready_p50_s']} / {r['ready_p95_s']} s",
            f"{r['requests_per_model']} ({_verbs(r['verbs_per_model'])})",
            f"**{r['writes_per_model']}** ({r['events_per_model']}, "
            f"{r['status_patches_per_model']})",
            f"{r['idle_requests_per_min']:.0f} ({r['idle_writes_per_min']:.0f}, "
            f"{r['idle_lists_per_min']:.0f})",
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['cpu_s_to_ready']:.0f} s ({r['cpu_ms_per_model']:.0f} ms/Model)",
            rolled,
            rolled_pct,
            rolled_writes,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Cost against N: time, requests per Model, memory, CPU per Model."""
    import matplotlib  # noqa: PLC0415 - only for --write

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n = [r["models"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0][0]
    ax.plot(n, [r["ready_all_s"] for r in rows], "o-", label="all Ready")
    rolled = [r for r in rows if r["rollout_all_s"] is not None]
    ax.plot(
        [r["models"] for r in rolled],
        [r["rollout_all_s"] for r in rolled],
        "s-",
        label="revision rolled across all",
    )
    ax.plot(n, [r["ready_p95_s"] for r in rows], "^--", label="p95 per Model, to Ready")
    ax.axhline(300, color="grey", linestyle=":", label="target: 1,000 in 5 min")
    ax.set_title("time (s)")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ax.plot(n, [r["requests_per_model"] for r in rows], "o-", label="requests / Model")
    ax.plot(n, [r["writes_per_model"] for r in rows], "s-", label="writes / Model")
    ax.axhline(12, color="grey", linestyle=":", label="target: 12 writes")
    ax.set_title("API requests per Model, apply to Ready")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax = axes[1][0]
    ax.plot(n, [r["peak_rss_mb"] for r in rows], "o-")
    ax.axhline(300, color="grey", linestyle=":", label="target: 300 MB")
    ax.set_title("operator peak RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(n, [r["cpu_ms_per_model"] for r in rows], "o-")
    ax.set_title("operator CPU ms per Model, apply to Ready")
    ax.set_ylim(bottom=0)
    for ax in axes.flat:
        ax.set_xlabel("Models")
        ax.set_xscale("log")
        ax.set_xticks(n, [str(x) for x in n])
        ax.grid(alpha=0.3)
    fig.suptitle("modelfleet at scale (2 shared cores, simulated nodes and downloads)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TABLE = re.compile(r"<!-- scale-table -->\n.*?<!-- /scale-table -->\n", re.DOTALL)


def block(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """The generated part of the section: the table, notes per N, and the stored results."""
    note_lines = "".join(f"- N = {note}\n" for note in notes if note)
    data = json.dumps({"rows": rows, "notes": notes}, indent=1)
    return (
        "<!-- scale-table -->\n"
        + table(rows)
        + "\n\n"
        + note_lines
        + f"<!-- scale-results\n{data}\n-->\n"
        + "<!-- /scale-table -->\n"
    )


def write_report(path: Path, result: dict[str, Any], note: str = "") -> None:
    """Add this run's row to the ``## Scale`` section of ``path`` and redraw the plot; the
    section's prose around the generated table is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    found = RESULTS.search(text)
    stored = json.loads(found.group(1)) if found else {"rows": [], "notes": []}
    new = row(result)
    rows = [r for r in stored["rows"] if r["models"] != new["models"]] + [new]
    rows.sort(key=lambda r: r["models"])
    notes = [n for n in stored.get("notes", []) if not n.startswith(f"{new['models']}:")]
    if note:
        notes.append(f"{new['models']}: {note}")
    notes.sort(key=lambda n: int(n.split(":")[0]))
    generated = block(rows, notes)
    if TABLE.search(text):
        text = TABLE.sub(lambda _: generated, text, count=1)
    elif SECTION.search(text):
        text = SECTION.sub(
            lambda m: m.group(0).rstrip("\n") + "\n\n" + generated + "\n", text, count=1
        )
    else:
        text = text.rstrip("\n") + "\n\n## Scale\n\n" + generated
    path.write_text(text.rstrip("\n") + "\n")
    plot(rows, path.parent / "scale.png")
