"""Weights I/O benchmark: .wts parse speed and safetensors load time / peak memory.

    python benchmarks/weights.py [--mb 120] [--repeat 3] [--dir DIR]

Prints a Markdown table (pasted into docs/weights.md). Targets: .wts parsing
>= 400 MB/s for gen_wts.py's layouts, and .wts peak RSS <= 1.3x the weight bytes (the
reader streams the text); safetensors peak RSS (load + touching every value, as a build
does) <= 1.2x the weight bytes. The per-value baseline is what tensorrtx's Python loaders
do (`struct.unpack('>f', bytes.fromhex(h))` per value); it runs on a prefix of the
file and is extrapolated, which the table says.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from netdef import weights
from netdef.weights import wts
from _machine import describe

_CHILD = "--child"


def synthetic_state_dict(values: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A conv-net-like state_dict: big 3x3 kernels plus many BatchNorm-sized vectors."""
    rng = np.random.default_rng(seed)
    out, left, i = {}, values, 0
    while left > 0:
        n = min(left, 256 * 256 * 9 * (1 + i % 4))
        out[f"layer{i // 4}.{i % 4}.conv.weight"] = rng.standard_normal(n, dtype=np.float32)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            out[f"layer{i // 4}.{i % 4}.bn.{stat}"] = rng.standard_normal(256, dtype=np.float32)
        out[f"layer{i // 4}.{i % 4}.bn.num_batches_tracked"] = np.array(i, np.int64)
        left -= n + 4 * 256
        i += 1
    return out


def best_of(repeat: int, fn) -> tuple[float, float, object]:
    """Best wall and best CPU seconds of `repeat` runs (CPU time is what other load cannot inflate)."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def _rates(size: int, wall: float, cpu: float) -> str:
    return f"{size / 1e6 / wall:.0f} MB/s wall, {size / 1e6 / cpu:.0f} MB/s CPU"


def struct_reader(path: str, max_bytes: int) -> tuple[int, int]:
    """tensorrtx-style Python loader: one struct.unpack per value; stops after max_bytes."""
    done = values = 0
    with open(path) as f:
        int(f.readline())
        for line in f:
            parts = line.split()
            np.array([struct.unpack(">f", bytes.fromhex(h))[0] for h in parts[2:]], np.float32)
            done += len(line)
            values += len(parts) - 2
            if done >= max_bytes:
                break
    return done, values


def child(path: str, reader: str) -> None:
    """Runs in a fresh interpreter: baseline RSS, then load + touch everything, then peak RSS."""
    if reader == "safetensors library (numpy)":
        import safetensors.numpy

        load = safetensors.numpy.load_file
    else:
        load = weights.load
    baseline = _status("VmRSS")
    try:  # reset the high-water mark so imports do not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    start = time.perf_counter()
    sd = load(path)
    loaded = time.perf_counter() - start
    total = sum(float(a.sum(dtype=np.float64)) for a in sd.values() if a.dtype.kind == "f")
    touched = time.perf_counter() - start
    print(json.dumps({"baseline": baseline, "peak": _status("VmHWM"), "load_s": loaded,
                      "touch_s": touched, "bytes": sum(a.nbytes for a in sd.values()), "sum": total}))


def _status(field: str) -> int:
    """Bytes of a /proc/self/status memory field (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_rss(path: str, reader: str) -> dict:
    out = subprocess.run([sys.executable, __file__, _CHILD, path, reader], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=120, help=".wts text size and safetensors weight size, MB")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings")
    ap.add_argument("--dir", help="scratch directory (default: a temp dir)")
    ap.add_argument("--baseline-mb", type=float, default=8, help="text the per-value reader parses, MB")
    args = ap.parse_args()
    mb = 1e6
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        # one .wts value is 9 bytes of text ('<space>' + 8 hex digits)
        sd = synthetic_state_dict(int(args.mb * mb / 9))
        rows = [("what", "size", "time", "rate", "note")]
        for variant in wts.VARIANTS:
            path = os.path.join(tmp, f"w_{variant}.wts")
            t_write, c_write, _ = best_of(1, functools.partial(weights.save, sd, path, wts_variant=variant))
            size = os.path.getsize(path)
            t_read, c_read, loaded = best_of(args.repeat, lambda: weights.load(path))
            exact = all(np.array_equal(loaded[k].view(np.uint32),
                                       np.asarray(v, np.float32).reshape(-1).view(np.uint32))
                        for k, v in sd.items())
            rows.append((f".wts read, {variant} variant (netdef)", f"{size / mb:.0f} MB",
                         f"{t_read:.2f} s wall, {c_read:.2f} s CPU", _rates(size, t_read, c_read),
                         f"best of {args.repeat}; bit-exact: {exact}"))
            rows.append((f".wts write, {variant} variant (netdef)", f"{size / mb:.0f} MB",
                         f"{t_write:.2f} s wall, {c_write:.2f} s CPU", _rates(size, t_write, c_write),
                         "atomic, fsync'd"))
            del loaded
        path = os.path.join(tmp, "w_double.wts")
        size = os.path.getsize(path)
        t_slow, c_slow, (done, values) = best_of(1, lambda: struct_reader(path, int(args.baseline_mb * mb)))
        rows.append((".wts read, per-value struct.unpack (tensorrtx Python loaders)", f"{size / mb:.0f} MB",
                     f"{t_slow * size / done:.1f} s wall (extrapolated)", _rates(done, t_slow, c_slow),
                     f"timed on the first {done / mb:.1f} MB ({values:,} values)"))

        st_sd = synthetic_state_dict(int(args.mb * mb / 4), seed=1)
        st_path = os.path.join(tmp, "w.safetensors")
        weights.save(st_sd, st_path)
        del st_sd, sd
        readers = ["netdef.weights.load"]
        try:
            import safetensors.numpy  # noqa: F401

            readers.append("safetensors library (numpy)")
        except ImportError:
            pass
        for reader in readers:
            runs = [measure_rss(st_path, reader) for _ in range(args.repeat)]
            r = min(runs, key=lambda x: x["touch_s"])
            peak = max(x["peak"] - x["baseline"] for x in runs)
            rows.append((f"safetensors load + sum all values ({reader})", f"{r['bytes'] / mb:.0f} MB",
                         f"{r['load_s'] * 1e3:.1f} ms load, {r['touch_s']:.2f} s with sum",
                         f"peak RSS +{peak / mb:.0f} MB = {peak / r['bytes']:.2f}x weights",
                         "fresh interpreter; warm page cache"))
        for variant in wts.VARIANTS:
            path = os.path.join(tmp, f"w_{variant}.wts")
            runs = [measure_rss(path, "netdef.weights.load") for _ in range(args.repeat)]
            r = min(runs, key=lambda x: x["touch_s"])
            peak = max(x["peak"] - x["baseline"] for x in runs)
            rows.append((f".wts load + sum all values, {variant} variant (netdef)",
                         f"{r['bytes'] / mb:.0f} MB of weights ({os.path.getsize(path) / mb:.0f} MB text)",
                         f"{r['touch_s']:.2f} s", f"peak RSS +{peak / mb:.0f} MB = {peak / r['bytes']:.2f}x weights",
                         "fresh interpreter; text streamed in 1 MiB blocks"))
    print(f"Machine: {describe()}, numpy {np.__version__}\n")
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == _CHILD:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
