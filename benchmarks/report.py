"""Turning the cells' results into checks, ratios, targets and the Markdown page.

``results[workload][framework]`` is the worker's dict (or ``{"skipped": why}``).
"""

from __future__ import annotations

LOSS_RTOL = 1e-3
LOSS_REFERENCE_ORDER = ("jax-jit", "torch", "numpy", "fgrad-jit")

COLUMNS = {
    "fgrad-eager": "fgrad eager",
    "fgrad-jit": "fgrad jit",
    "numpy": "NumPy by hand",
    "jax-jit": "JAX jit",
    "jax-eager": "JAX eager",
    "torch": "PyTorch eager",
    "autograd": "autograd",
}

#: Cells measured while other processes kept more than this fraction of the CPU busy get "†".
BUSY_MARK = 0.25

BEGIN = "<!-- BEGIN GENERATED: python -m benchmarks.run --out docs/performance.md -->"
END = "<!-- END GENERATED -->"


# ------------------------------------------------------------------ numbers


def rate(cell: dict | None) -> float | None:
    if not cell or "steps_per_s" not in cell or cell.get("loss_mismatch"):
        return None
    return cell["steps_per_s"]


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def short_error(msg: str, limit: int = 70) -> str:
    first = msg.strip().splitlines()[0] if msg.strip() else "error"
    return first if len(first) <= limit else first[: limit - 1] + "…"


def cell_text(cell: dict | None) -> str:
    if cell is None:
        return "—"
    if "skipped" in cell:
        return f"skipped ({cell['skipped']})"
    if "error" in cell:
        return f"error: {short_error(cell['error'])}"
    text = fmt_rate(cell.get("steps_per_s"))
    if (cell.get("background_busy") or 0) > BUSY_MARK:
        text += " †"
    if cell.get("loss_mismatch"):
        text = f"**loss mismatch** ({text})"
    return text


# ------------------------------------------------------------------ loss agreement


def check_losses(results: dict) -> list[str]:
    """Compare each cell's losses with a reference column; flag cells beyond ``LOSS_RTOL``.

    Sets ``cell["loss_rel_diff"]`` and ``cell["loss_mismatch"]``; returns the problems.
    """
    problems = []
    for wl, cells in results.items():
        have = {fw: c for fw, c in cells.items() if c and c.get("losses")}
        ref_name = next((n for n in LOSS_REFERENCE_ORDER if n in have), None)
        if ref_name is None:
            continue
        ref = have[ref_name]["losses"]
        for fw, cell in have.items():
            pairs = zip(cell["losses"], ref, strict=False)
            diffs = [abs(a - b) / max(abs(b), 1e-12) for a, b in pairs]
            worst = max(diffs) if diffs else 0.0
            cell["loss_reference"] = ref_name
            cell["loss_rel_diff"] = worst
            cell["loss_mismatch"] = not worst <= LOSS_RTOL  # NaN counts as a mismatch
            if cell["loss_mismatch"]:
                problems.append(
                    f"{wl}/{fw}: losses differ from {ref_name} by up to {worst:.3g} relative "
                    f"(tolerance {LOSS_RTOL:g}); {fw} {cell['losses'][-3:]} vs {ref[-3:]}"
                )
    return problems


# ------------------------------------------------------------------ ratios and targets


def ratios(results: dict, ceiling: dict | None) -> dict:
    out = {}
    for wl, cells in results.items():
        fj, fe = rate(cells.get("fgrad-jit")), rate(cells.get("fgrad-eager"))
        jj, pt = rate(cells.get("jax-jit")), rate(cells.get("torch"))
        best_peer = max((v for v in (jj, pt) if v is not None), default=None)
        row = {
            "fgrad-jit/jax-jit": ratio(fj, jj),
            "fgrad-jit/torch": ratio(fj, pt),
            "fgrad-jit/best-peer": ratio(fj, best_peer),
            "fgrad-eager/torch": ratio(fe, pt),
        }
        if wl == "mlp" and ceiling and "default" in ceiling:
            row["fgrad-jit/matmuls"] = ratio(fj, matmul_ceiling(ceiling))
        out[wl] = row
    return out


def matmul_ceiling(ceiling: dict) -> float:
    """The faster of the mlp matmuls' rates with the run's BLAS threads and with one."""
    return max(v["mlp_matmuls_steps_per_s"] for k, v in ceiling.items() if k in ("default", "1"))


def _verdict(value: float | None, goal: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    if higher_is_better:
        if value >= goal:
            return "**met**"
        return f"missed: {value:.2f}x vs >= {goal:g}x (needs {goal / value:.1f}x faster)"
    if value <= goal:
        return "**met**"
    return f"missed: {value:.2f} s vs < {goal:g} s ({value / goal:.1f}x over)"


def targets(
    results: dict, ceiling: dict | None, compile_probe: dict, scan: bool = False
) -> list[tuple[str, str, str]]:
    """``(target, measured, verdict)`` rows for the issue's targets."""
    r = ratios(results, ceiling)
    rows = []
    for wl in results:
        v = r[wl]["fgrad-jit/best-peer"]
        rows.append(
            (
                f"`{wl}` jit faster than the faster of JAX-jit and PyTorch",
                fmt_ratio(v),
                _verdict(v, 1.0),
            )
        )
    if "xor" in r:
        v = r["xor"]["fgrad-jit/jax-jit"]
        rows.append(("`xor` jit >= 2x JAX-jit", fmt_ratio(v), _verdict(v, 2.0)))
    if "mlp" in r and "fgrad-jit/matmuls" in r["mlp"]:
        v = r["mlp"]["fgrad-jit/matmuls"]
        rows.append(
            (
                "`mlp` jit >= 90% of its eight matmuls alone (NumPy; the faster thread setting)",
                "—" if v is None else f"{100 * v:.0f}%",
                _verdict(v, 0.9),
            )
        )
    for wl in ("xor", "mlp"):
        if wl in r:
            v = r[wl]["fgrad-eager/torch"]
            rows.append((f"`{wl}` eager >= PyTorch eager", fmt_ratio(v), _verdict(v, 1.0)))
    if "mlp" in results:
        cold = (results["mlp"].get("fgrad-jit") or {}).get("first_call_s")
        disk = (compile_probe.get("mlp") or {}).get("first_call_s")
        rows.append(
            (
                "`mlp` compile < 3 s cold",
                "—" if cold is None else f"{cold:.2f} s",
                _verdict(cold, 3.0, higher_is_better=False),
            )
        )
        rows.append(
            (
                "`mlp` compile < 0.5 s from the disk cache (new process)",
                "—" if disk is None else f"{disk:.2f} s",
                _verdict(disk, 0.5, higher_is_better=False),
            )
        )
    if "lstm" in results:
        if scan:
            rows.append(("`lstm` uses `lax.scan`", "`lax.scan` (fgrad and JAX)", "**met**"))
        else:
            rows.append(
                (
                    "`lstm` uses `lax.scan`",
                    "unrolled (32 steps traced out)",
                    "not in this run: rerun with `--lstm-scan`",
                )
            )
    return rows


# ------------------------------------------------------------------ Markdown


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _numpy_blas(run: dict) -> list[dict]:
    """NumPy's BLAS pools: from the ceiling process (NumPy only), else a NumPy-only cell."""
    sources = [run.get("ceiling") or {}]
    sources += [cs.get(f) or {} for cs in run["results"].values() for f in ("numpy", "autograd")]
    for src in sources:
        pools = [d for d in src.get("blas", []) if d.get("user_api") == "blas"]
        if pools:
            return pools
    return []


def _first_blas(run: dict) -> str:
    parts = [
        f"{d.get('internal_api')} {d.get('version')} "
        f"(kernel `{d.get('architecture')}`, {d.get('num_threads')} threads)"
        for d in _numpy_blas(run)
    ]
    return "; ".join(parts) or "unknown (no NumPy-only process ran)"


def _fmt_s(v) -> str:
    return "—" if v is None else f"{v:.2f} s"


def markdown(run: dict) -> str:
    """The generated block of docs/performance.md (between BEGIN and END markers)."""
    results, ceiling, info = run["results"], run.get("ceiling"), run["machine"]
    frameworks, probe = run["frameworks"], run.get("compile_probe", {})
    v = info["versions"]
    lines = [BEGIN, "", f"Run of {info['date']} (`{run['command']}`).", ""]
    if run.get("quick"):
        lines += ["**Quick smoke run: too short for the reported numbers to mean much.**", ""]
    lines += [
        f"- Machine: {info['cpu']} ({', '.join(info['cpu_flags']) or 'no AVX2 flag seen'}), "
        f"{info['cores']} cores, {info['platform']}; load average at start "
        f"{_loadavg(info['loadavg'])}, at end {_loadavg(run.get('loadavg_end'))}.",
        f"- Versions: Python {v['python']}, numpy {v['numpy']}, numba {v['numba']} / llvmlite "
        f"{v['llvmlite']}, jax {v['jax']} / jaxlib {v['jaxlib']}, optax {v['optax']}, "
        f"torch {v['torch']}, autograd {v['autograd']}.",
        f"- BLAS used by NumPy (threadpoolctl, in the benchmark processes): "
        f"{_first_blas(run)}. "
        f"OpenBLAS overrides in the calling environment: "
        f"{_overrides(info['openblas_overrides_in_parent_env'])}; unset for every benchmark "
        "process.",
        f"- Timing: median of {run['repeats']} blocks of >= {run['min_time']:g} s each, after "
        f"a 0.5 s warm-up; each block starts from the initial parameters. Threads: "
        f"{_threads(run)}. fgrad optimizer: "
        f"{run.get('fgrad_optimizer') or 'not run'}; JAX optimizer: "
        f"{run.get('jax_optimizer') or 'not run'}. LSTM: "
        f"{'`lax.scan` in fgrad and JAX' if run.get('lstm_scan') else 'unrolled (32 steps)'}.",
        "",
    ]
    missing = [f"{COLUMNS[f]} ({why})" for f, why in frameworks.items() if why]
    if missing:
        lines += [f"Columns skipped: {', '.join(missing)}.", ""]
    cols = [f for f in COLUMNS if f in frameworks and not frameworks[f]]
    lines += ["### Training steps per second (higher is better)", ""]
    rows = [[f"`{wl}`"] + [cell_text(cells.get(f)) for f in cols] for wl, cells in results.items()]
    lines += _table(["workload"] + [COLUMNS[f] for f in cols], rows) + [""]
    lines += [_busy_note(results), ""]

    lines += ["### Ratios (fgrad ÷ peer, steps/s; > 1 means fgrad is faster)", ""]
    r = ratios(results, ceiling)
    rows = [
        [
            f"`{wl}`",
            fmt_ratio(x["fgrad-jit/jax-jit"]),
            fmt_ratio(x["fgrad-jit/torch"]),
            fmt_ratio(x["fgrad-jit/best-peer"]),
            fmt_ratio(x["fgrad-eager/torch"]),
        ]
        for wl, x in r.items()
    ]
    lines += _table(
        [
            "workload",
            "fgrad jit / JAX jit",
            "fgrad jit / PyTorch",
            "fgrad jit / best of both",
            "fgrad eager / PyTorch eager",
        ],
        rows,
    ) + [""]

    if ceiling and "default" in ceiling:
        lines += _ceiling_section(ceiling, results) + [""]
    lines += ["### Compile time (first call: trace + compile + one step) and peak RSS", ""]
    rows = []
    for wl, cells in results.items():
        fj, jj = cells.get("fgrad-jit") or {}, cells.get("jax-jit") or {}
        rows.append(
            [
                f"`{wl}`",
                _fmt_s(fj.get("first_call_s")),
                _fmt_s((probe.get(wl) or {}).get("first_call_s")),
                _fmt_s(jj.get("first_call_s")),
            ]
        )
    lines += _table(
        ["workload", "fgrad jit, cold cache", "fgrad jit, disk cache (new process)", "JAX jit"],
        rows,
    ) + [""]
    rows = [[f"`{wl}`"] + [_rss(cells.get(f)) for f in cols] for wl, cells in results.items()]
    lines += ["Peak RSS of each cell's process (MiB; includes importing the framework):", ""]
    lines += _table(["workload"] + [COLUMNS[f] for f in cols], rows) + [""]

    lines += [
        "Thread pools loaded in each column's processes (threadpoolctl; library, version, "
        "threads):",
        "",
    ]
    lines += _table(
        ["column", "BLAS / OpenMP pools"], [[COLUMNS[f], _pools(results, f)] for f in cols]
    ) + [""]

    lines += [
        f"### Loss agreement (losses of the first {run['check_steps']} steps from the same "
        f"parameters; max relative difference from the reference column, tolerance "
        f"{LOSS_RTOL:g})",
        "",
    ]
    rows = []
    for wl, cells in results.items():
        ref = next(
            (c.get("loss_reference") for c in cells.values() if c and c.get("loss_reference")), None
        )
        rows.append([f"`{wl}`", COLUMNS.get(ref, "—")] + [_loss(cells.get(f)) for f in cols])
    lines += _table(["workload", "reference"] + [COLUMNS[f] for f in cols], rows) + [""]

    lines += ["### Targets (issue 4)", ""]
    lines += _table(
        ["target", "measured", "verdict"],
        [list(t) for t in targets(results, ceiling, probe, bool(run.get("lstm_scan")))],
    ) + ["", END]
    return "\n".join(lines)


def _ceiling_section(ceiling: dict, results: dict) -> list[str]:
    d, one = ceiling["default"], ceiling.get("1")
    flops = ceiling["mlp_matmul_flops"]
    fj = rate((results.get("mlp") or {}).get("fgrad-jit"))
    jj = rate((results.get("mlp") or {}).get("jax-jit"))
    lines = ["### The BLAS ceiling", ""]
    rows = [
        [
            "float32 GEMM 1024x1024x1024",
            f"{d['gemm_gflops']:.0f} GFLOP/s",
            f"{one['gemm_gflops']:.0f} GFLOP/s" if one else "—",
        ],
        [
            "`mlp` step's 8 matmuls alone (NumPy, `out=`, transposed views)",
            f"{fmt_rate(d['mlp_matmuls_steps_per_s'])} steps/s "
            f"({d['mlp_matmuls_gflops']:.0f} GFLOP/s)",
            f"{fmt_rate(one['mlp_matmuls_steps_per_s'])} steps/s" if one else "—",
        ],
    ]
    for name, v in (("fgrad jit", fj), ("JAX jit", jj)):
        if v is not None:
            rows.append(
                [
                    f"`mlp` full step, {name}",
                    f"{fmt_rate(v)} steps/s ({v * flops / 1e9:.0f} GFLOP/s of matmul work, "
                    f"{100 * v / matmul_ceiling(ceiling):.0f}% of the faster matmuls-alone rate)",
                    "",
                ]
            )
    n = next(
        (p["num_threads"] for p in ceiling.get("blas", []) if p.get("user_api") == "blas"), "?"
    )
    lines += _table(["", f"BLAS threads as in the run ({n})", "1 BLAS thread"], rows)
    lines += ["", f"The eight matmuls are {flops / 1e6:.0f} MFLOP per step."]
    return lines


def _threads(run: dict) -> str:
    if run.get("threads"):
        return f"limited to {run['threads']} in every framework (`--threads`)"
    cells = [c for cs in run["results"].values() for c in cs.values()]
    torch = next((c["torch_threads"] for c in cells if c and "torch_threads" in c), None)
    blas = next((d.get("num_threads") for d in _numpy_blas(run)), "?")
    torch = "?" if torch is None else torch
    return (
        f"each framework's default on {run['machine']['cores']} cores (OpenBLAS {blas}, "
        f"XLA's CPU pool, `torch.set_num_threads({torch})`; fgrad's Numba kernels serial)"
    )


def _pools(results: dict, framework: str) -> str:
    seen = {}
    for cells in results.values():
        for d in (cells.get(framework) or {}).get("blas", []):
            name = d.get("prefix") or d.get("internal_api")
            if d.get("version"):
                name += f" {d['version']}"
            seen[name] = f"{name} ({d.get('num_threads')})"
    return ", ".join(seen.values()) or "none"


def _busy_note(results: dict) -> str:
    busy = [
        c["background_busy"]
        for cs in results.values()
        for c in cs.values()
        if c and c.get("background_busy") is not None
    ]
    if not busy:
        return "(CPU use by other processes was not measured.)"
    marked = sum(b > BUSY_MARK for b in busy)
    return (
        f"Other processes kept {100 * min(busy):.0f}-{100 * max(busy):.0f}% of the CPU busy "
        f"in the 0.5 s before each cell; † marks the {marked} of {len(busy)} cells measured "
        f"above {100 * BUSY_MARK:.0f}% (their numbers are pessimistic: multi-threaded BLAS "
        f"stalls when a core is taken)."
    )


def _rss(cell):
    return "—" if not cell or "peak_rss_mb" not in cell else f"{cell['peak_rss_mb']:.0f}"


def _loss(cell):
    if not cell or "loss_rel_diff" not in cell:
        return "—"
    mark = " **MISMATCH**" if cell.get("loss_mismatch") else ""
    return f"{cell['losses'][-1]:.6g} ({cell['loss_rel_diff']:.1e}){mark}"


def _loadavg(load) -> str:
    return "?" if not load else ", ".join(f"{x:.2f}" for x in load)


def _overrides(d: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in d.items()) if d else "none"


def splice(existing: str | None, generated: str, template: str) -> str:
    """Replace the generated block inside ``existing`` (or start from ``template``)."""
    if existing and BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + generated + tail
    return template.replace("{generated}", generated)
