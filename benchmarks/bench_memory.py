"""Peak RSS of a batch review over 10x more slices: the store keeps compact stats, not maps.

Each measurement runs in a fresh process (ru_maxrss is a high-water mark). The baseline keeps
every slice's full arrays, as a naive viewer would. Usage: python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from common import lgg_slices, model_path


def child(n: int, policy: str) -> None:
    from unetpp_gui.core.inference import predict_paths
    from unetpp_gui.core.model_io import load_model
    from unetpp_gui.core.store import SliceStore

    model = load_model(model_path())
    paths = lgg_slices(n)
    store = SliceStore()
    kept = []
    t0 = time.perf_counter()
    for res in predict_paths(model, paths, batch_size=8, keep_maps=True):
        store.put(res)  # what the GUI does: stats for all, arrays for the 64 most recent
        if policy == "keep-all":
            kept.append(res)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": len(paths), "policy": policy, "peak_rss_mb": rss, "seconds": time.perf_counter() - t0}))


def main() -> None:
    if len(sys.argv) == 3:
        child(int(sys.argv[1]), sys.argv[2])
        return
    rows = []
    for n, policy in ((314, "store"), (3140, "store"), (314, "keep-all")):
        out = subprocess.run([sys.executable, __file__, str(n), policy], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, big, naive = rows
    print("### Memory: peak RSS over batch size\n")
    print("| slices | policy | peak RSS (MB) | time (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['policy']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / (big["n"] - small["n"]) * 1024
    naive_growth = (naive["peak_rss_mb"] - small["peak_rss_mb"]) / naive["n"] * 1024
    print(f"\n10x more slices costs {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x the peak RSS "
          f"({growth:.0f} KB per extra slice). Keeping every slice's arrays (baseline) costs about "
          f"{naive_growth:.0f} KB per slice, i.e. about {naive_growth * 3140 / 1024 / 1024:.1f} GB more "
          f"for 3,140 slices.\n")


if __name__ == "__main__":
    main()
