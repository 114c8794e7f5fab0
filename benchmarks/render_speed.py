"""Renderer speed: normal+depth rendering of a dense head, forward and forward+backward.

Claim (DESIGN.md, "Renderer"): the built-in renderer draws a dense head at 512^2 in about 100 ms
forward+backward on 2 CPU cores, well under a second on one core, and far faster than
pytorch3d's CPU rasterizer.

Each case runs in a fresh child process so that its thread count and its memory high-water mark
are its own. ``forward_ms`` is ``render_normal_depth`` under ``torch.no_grad()``;
``forward_backward_ms`` renders with gradients and back-propagates ``sum(w * normal) + sum(depth)``
to the world vertices; both are medians over the repeats after one warm-up (``runs``: how many;
pytorch3d on CPU is timed once). Optional backends that are not installed are skipped with a
note. ``peak_mem_mb`` is, on CPU, the highest resident set size sampled every 0.5 ms by a thread
during one forward+backward pass, minus the resident set just before it (the process-wide
``ru_maxrss`` is unusable here: it remembers import-time peaks, and the kernel may reclaim idle
pages in between); on CUDA,
``torch.cuda.max_memory_allocated`` above the memory allocated before it. The mesh is
``exphead.head_model.default_dense_mesh`` when it imports, otherwise a head-sized ellipsoid of
~150k faces (``meta["mesh"]`` says which).

    python benchmarks/render_speed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from exphead.camera import Camera  # noqa: E402
from exphead.render import render_normal_depth  # noqa: E402

log = logging.getLogger("render_speed")


def ellipsoid_head(cells: int = 112, resolution: int = 512) -> tuple[torch.Tensor, torch.Tensor, Camera]:
    """A head-sized ellipsoid (``12 * cells^2`` faces, a subdivided cube pushed onto it) framed by
    the portrait camera so that it fills ~59% of the image: (``1 x N x 3``, ``M x 3``, camera)."""
    g = torch.linspace(-1.0, 1.0, cells + 1, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    grid = torch.arange((cells + 1) ** 2).view(cells + 1, cells + 1)
    q0, q1, q2, q3 = grid[:-1, :-1], grid[1:, :-1], grid[1:, 1:], grid[:-1, 1:]
    quads = torch.cat([torch.stack([q0, q1, q2], -1).reshape(-1, 3), torch.stack([q0, q2, q3], -1).reshape(-1, 3)])
    points, tris = [], []
    for axis in range(3):
        u, v = [i for i in range(3) if i != axis]
        for side in (-1.0, 1.0):
            p = torch.empty(cells + 1, cells + 1, 3, dtype=torch.float64)
            p[..., axis], p[..., u], p[..., v] = side, a, b
            outward = (side > 0) == ((v - u) % 3 == 1)  # (u, v, axis) right-handed and facing out
            tris.append((quads if outward else quads[:, [0, 2, 1]]) + sum(len(x) for x in points))
            points.append(p.reshape(-1, 3))
    verts = torch.cat(points)
    key, inverse = torch.unique(torch.round(verts * cells * 2).long(), dim=0, return_inverse=True)
    merged = torch.zeros(len(key), 3, dtype=torch.float64).index_copy_(0, inverse, verts)
    merged = merged / merged.norm(dim=1, keepdim=True)
    world = merged * torch.tensor([0.15, 0.19, 0.16], dtype=torch.float64) + torch.tensor([0.0, 0.05, 0.0])
    camera = Camera.portrait(1, resolution, resolution, fov_deg=14.0, distance=1.6, center=(0.0, 0.05, 0.0))
    return world.float()[None], inverse[torch.cat(tris)], camera


def dense_head(resolution: int) -> tuple[torch.Tensor, torch.Tensor, Camera, str]:
    """The library's default dense head when available, else :func:`ellipsoid_head`."""
    try:
        from exphead.head_model import default_dense_mesh
    except ImportError:
        return (*ellipsoid_head(resolution=resolution), "ellipsoid (12 * 112^2 faces)")
    return (*default_dense_mesh(resolution, resolution), "exphead.head_model.default_dense_mesh")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_rise_mb(fn) -> float:
    """Run ``fn`` while a thread samples the resident set; return its highest rise in MiB."""
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0.0, max(peak[0], _rss_mb()) - base)


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Time and measure one case in this process (the child side)."""
    torch.set_num_threads(case["threads"])
    data = torch.load(case["mesh"])
    device = torch.device(case["device"])
    cam = Camera(data["K"], data["R"], data["t"], case["resolution"], case["resolution"]).to(device)
    cam = cam.expand(case["batch"])
    verts = data["verts"].to(device).expand(case["batch"], -1, -1).contiguous()
    faces = data["faces"].to(device)
    weight = torch.randn(case["batch"], 3, case["resolution"], case["resolution"], device=device)

    def forward() -> None:
        with torch.no_grad():
            render_normal_depth(verts, faces, cam, backend=case["backend"], cull_backfaces=case["cull_backfaces"])

    def forward_backward() -> None:
        x = verts.detach().requires_grad_(True)
        out = render_normal_depth(x, faces, cam, backend=case["backend"], cull_backfaces=case["cull_backfaces"])
        ((out.normal * weight).sum() + out.depth.sum()).backward()

    def timed(fn) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return 1000.0 * (time.perf_counter() - start), 1000.0 * (time.process_time() - cpu)

    # Warm up lazily initialised state (thread pools, allocator) on a tiny scene before measuring.
    tiny = Camera(cam.K[:1], cam.R[:1], cam.t[:1], 8, 8)
    render_normal_depth(verts[:1, :3].detach().requires_grad_(True), faces[:1] % 3, tiny).depth.sum().backward()
    first: list[tuple[float, float]] = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        first.append(timed(forward_backward))
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _peak_rss_rise_mb(lambda: first.append(timed(forward_backward)))
    if case["repeats"]:
        forward()
        fwd = [timed(forward) for _ in range(case["repeats"])]
        fwd_bwd = [timed(forward_backward) for _ in range(case["repeats"])]
    else:  # a slow backend: one forward, and the memory-measuring forward+backward is the timed one
        fwd, fwd_bwd = [timed(forward)], first
    return {"backend": case["backend"], "device": case["device"], "threads": case["threads"],
            "cull_backfaces": case["cull_backfaces"],
            "resolution": case["resolution"], "batch": case["batch"], "faces": int(faces.shape[0]),
            "forward_ms": round(statistics.median(t for t, _ in fwd), 1),
            "forward_backward_ms": round(statistics.median(t for t, _ in fwd_bwd), 1),
            "forward_backward_best_ms": round(min(t for t, _ in fwd_bwd), 1),
            "peak_mem_mb": round(peak, 1),
            "forward_backward_cpu_ms": round(statistics.median(c for _, c in fwd_bwd), 1), "runs": len(fwd_bwd)}


def _child(case: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _available(backend: str) -> bool:
    module = {"nvdiffrast": "nvdiffrast.torch", "pytorch3d": "pytorch3d"}[backend]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, same rows (about a minute)")
    parser.add_argument("--json", type=Path, help="write the rows and metadata to this JSON file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        sys.stdout.write(json.dumps(run_case(json.loads(args.case))) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = 2 if args.quick else 7
    load = os.getloadavg()
    verts, faces, cam, source = dense_head(512)
    backends = ["builtin"] + [b for b in ("nvdiffrast", "pytorch3d") if _available(b)]
    notes = [f"{b} is not installed: its rows are skipped" for b in ("nvdiffrast", "pytorch3d") if b not in backends]
    if "nvdiffrast" in backends and args.device != "cuda":
        notes.append("nvdiffrast needs CUDA: its rows are skipped")
    if "pytorch3d" in backends and args.device == "cpu":
        notes.append("pytorch3d on CPU: 256^2 batch 1 only and not with --quick, one timed forward and one "
                     "forward+backward: its CPU rasterizer tests every face at every pixel (minutes per render)")
    threads = [torch.get_num_threads()] + ([1] if args.device == "cpu" and torch.get_num_threads() > 1 else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        meshes = {}
        for res in (256, 512):
            small = cam.scaled(res, res)
            meshes[res] = str(Path(tmp) / f"mesh{res}.pt")
            torch.save({"verts": verts, "faces": faces, "K": small.K, "R": small.R, "t": small.t}, meshes[res])
        # builtin at every thread count; with back-face culling and the other backends at the last one
        variants = [("builtin", n, False) for n in threads] + [("builtin", threads[-1], True)]
        variants += [(b, threads[0], False) for b in backends[1:]]
        for res in (256, 512):
            for batch in (1, 8):
                for backend, n, cull in variants:
                    if backend == "nvdiffrast" and args.device != "cuda":
                        continue
                    slow = backend == "pytorch3d" and args.device == "cpu"
                    if slow and (batch > 1 or res > 256 or args.quick):
                        continue  # see the note above
                    case = {"backend": backend, "device": args.device, "threads": n, "cull_backfaces": cull,
                            "resolution": res, "batch": batch, "mesh": meshes[res],
                            "repeats": 0 if slow else repeats}
                    log.info("running %s", {k: v for k, v in case.items() if k != "mesh"})
                    rows.append(_child(case))
    reference = {(r["resolution"], r["batch"], r["threads"]): r["forward_backward_ms"]
                 for r in rows if r["backend"] == "builtin" and not r["cull_backfaces"]}
    for r in rows:
        builtin = reference[r["resolution"], r["batch"], r["threads"]]
        r["ratio_to_builtin"] = round(r["forward_backward_ms"] / builtin, 2)
    print_table(rows)
    for note in notes:
        log.info("note: %s", note)
    meta = {**machine_meta(), "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
            "mesh": source, "vertices": int(verts.shape[1]), "repeats": repeats, "notes": notes,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "timing": "median wall time (forward_backward_best_ms: the fastest run, the figure least disturbed by "
                      "other guests of a shared host; forward_backward_cpu_ms: process CPU time, all threads); "
                      "forward under no_grad, forward_backward to world vertices",
            "peak_mem": "CPU: highest RSS sampled every 0.5 ms during one forward+backward minus RSS before; "
                        "CUDA: max_memory_allocated above the allocated baseline"}
    if args.json:
        write_json(args.json, "render_speed", rows, meta)


if __name__ == "__main__":
    main()
