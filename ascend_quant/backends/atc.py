"""The real CANN backend: drives atc / amct_onnx to convert, ais_bench (or msame) to run and bench.

Every tool runs as an argv list (never a shell) with the environment `toolkit.discover()`
captured, its output streamed line by line to a log file under `<out_dir>/logs/` and to a
status callback. atc runs in `<out_dir>/work/<name>_<precision>/` (it drops fusion_result.json
there) and writes its .om there too; only a checked .om is moved into `out_dir`, under the name
atc gave it: `<name>_<precision>.om` or `<name>_<precision>_<os>_<arch>.om`. The os/arch tag is
kept because such a model only runs on that OS/CPU. The manifest `<om stem>.json` sits beside it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ascend_quant.__about__ import __version__
from ascend_quant.aisbench_io import gear_of_files
from ascend_quant.backends import atc_argv
from ascend_quant.backends.aisbench_summary import (
    compute_times,
    find_summary_json,
    group_outputs,
    latency_stats,
    load_summary_json,
    parse_summary_text,
)
from ascend_quant.backends.atc_argv import commands_for
from ascend_quant.backends.atc_log import ATC_SUCCESS, error_codes, first_error_line, hint_for
from ascend_quant.backends.base import (
    Artifact,
    BenchResult,
    ConvertRequest,
    LatencyStats,
    RunResult,
)
from ascend_quant.backends.omfile import is_real_om, read_om_header
from ascend_quant.backends.toolkit import Toolkit, discover
from ascend_quant.config import BenchConfig
from ascend_quant.errors import ToolchainError, UsageError, not_a_model_file
from ascend_quant.gears import Gears
from ascend_quant.progress import NULL_PROGRESS, Progress
from ascend_quant.runners.aisbench import AisBenchRunner
from ascend_quant.runners.geared import GearedRunner
from ascend_quant.tensors import graph_io
from ascend_quant.workspace import atomic_write_json, read_json, sha256_file

log = logging.getLogger("ascend_quant")

StatusCallback = Callable[[str], None]
MISSING_TOOLKIT_HINT = (
    "source the toolkit's set_env.sh (/usr/local/Ascend/ascend-toolkit/set_env.sh, or "
    "/usr/local/Ascend/cann/set_env.sh for CANN 8.5+), set ASCEND_TOOLKIT_HOME, or install CANN; "
    "--backend sim simulates without it"
)
_OS_ARCH_RE = r"_[a-z]+_(?:aarch64|x86_64|arm64|x86)"
_KILL_GRACE_S = 5.0
# InferSession.infer's mode for each gear kind (the gear itself comes from the feeds' shapes)
INFER_MODES = {"batch": "dymbatch", "image_size": "dymhw", "dims": "dymdims"}


# ---------------------------------------------------------------- running a tool


@dataclass(frozen=True)
class ProcessResult:
    argv: list[str]
    returncode: int
    output: str
    duration_s: float
    log_path: Path


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, _KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_streaming(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    on_line: StatusCallback | None = None,
) -> ProcessResult:
    """Run argv in its own process group; tee its output to `log_path` and `on_line`.

    Timeout: the group is killed and ToolchainError raised. Ctrl-C: the group is killed and
    KeyboardInterrupt re-raised. The caller judges the exit code.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(f"$ cd {shlex.quote(str(cwd))} && {shlex.join(argv)}\n")
        log_file.flush()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolchainError(
                f"cannot start {argv[0]}: {exc.strerror or exc}", hint=MISSING_TOOLKIT_HINT
            ) from None

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                log_file.write(line)
                log_file.flush()
                if on_line is not None and line.strip():
                    with contextlib.suppress(Exception):
                        on_line(line.rstrip())

        reader = threading.Thread(target=pump, name=f"{Path(argv[0]).name}-output", daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reader.join(timeout=_KILL_GRACE_S)
            log_file.write(f"[ascend-quant] stopped after the {timeout_s:g} s timeout\n")
            raise ToolchainError(
                f"{Path(argv[0]).name} did not finish within {timeout_s:g} s and was stopped"
                f" (log: {log_path})",
                hint="raise atc.timeout_s in ascend-quant.toml if the model is large",
                log_path=str(log_path),
            ) from None
        except KeyboardInterrupt:
            _kill_group(proc)
            reader.join(timeout=_KILL_GRACE_S)
            log_file.write("[ascend-quant] interrupted\n")
            raise
        reader.join(timeout=_KILL_GRACE_S)
        duration = time.monotonic() - start
        log_file.write(f"[ascend-quant] exit code {returncode} after {duration:.2f} s\n")
    return ProcessResult(argv, returncode, "".join(lines), duration, log_path)


def _failure(tool: str, what: str, result: ProcessResult) -> ToolchainError:
    codes = error_codes(result.output)
    detail = first_error_line(result.output)
    message = f"{tool} {what}"
    if codes:
        message += f" [{', '.join(codes)}]"
    if detail:
        message += f": {detail}"
    message += f" (log: {result.log_path})"
    hint = hint_for(result.output, codes) or f"read the log: {result.log_path}"
    return ToolchainError(message, hint=hint, log_path=str(result.log_path), codes=codes)


# ---------------------------------------------------------------- helpers


def _model_outputs(model: Path) -> list[dict[str, Any]]:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    return [
        {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}
        for spec in graph_io(proto)[1]
    ]


def _header_summary(header: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "version", "platform_version", "length", "model_length", "dynamic")
    return {k: header[k] for k in keys} | {
        "file_size": header["file_size"],
        "warnings": header["warnings"],
    }


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:3]) if parts else None


def read_manifest(om: Path) -> dict[str, Any]:
    """The artifact manifest beside an .om (`<stem>.json`), or {} when there is none."""
    path = Path(om).with_suffix(".json")
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_MSAME_TIME = re.compile(r"^Inference time:\s*([0-9.]+)\s*ms", re.M)


def parse_msame(text: str) -> list[float]:
    """Per-run latencies (ms) from msame's `Inference time: <x>ms` lines."""
    return [float(v) for v in _MSAME_TIME.findall(text)]


# ---------------------------------------------------------------- the backend


class AtcBackend:
    """Backend over the installed CANN toolkit (see the module docstring)."""

    name = "atc"

    def __init__(
        self,
        toolkit: Toolkit | None = None,
        status: StatusCallback | None = None,
        device: int = 0,
    ) -> None:
        self._toolkit = toolkit
        self.status = status  # receives each non-empty output line of the running tool
        self.device = device

    @property
    def toolkit(self) -> Toolkit:
        if self._toolkit is None:
            self._toolkit = discover()
        return self._toolkit

    def _program(self, name: str) -> Path:
        tk = self.toolkit
        path = {"atc": tk.atc, "amct_onnx": tk.amct_onnx}.get(name)
        if path is None:
            raise ToolchainError(f"{name} was not found", hint=MISSING_TOOLKIT_HINT)
        return path

    # ------------------------------------------------------------ convert

    def convert(self, request: ConvertRequest, progress: Progress = NULL_PROGRESS) -> Artifact:
        """Pre-check, run the route's commands, check and install the .om, write its manifest."""
        tk = self.toolkit
        if tk.atc is None:
            raise ToolchainError("the CANN toolkit (atc) was not found", hint=MISSING_TOOLKIT_HINT)
        route = atc_argv.choose_route(request, tk)
        work = atc_argv.work_dir(request)
        atc_argv.precheck(request, route, tk, cwd=work)
        commands = atc_argv.commands_for(request, route)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        stem = atc_argv.output_stem(request)
        records: list[dict[str, Any]] = []
        started = time.monotonic()
        with progress.task(f"atc {stem} ({route})", total=len(commands)) as advance:
            for argv in commands:
                tool = argv[0]
                resolved = [str(self._program(tool)), *argv[1:]]
                log_file = atc_argv.log_path(request, "amct" if tool == "amct_onnx" else "atc")
                log_file.unlink(missing_ok=True)
                if self.status:
                    self.status(f"{tool} {stem}: starting")
                result = run_streaming(
                    resolved, tk.env, work, log_file, request.atc.timeout_s, self.status
                )
                records.append(
                    {
                        "tool": tool,
                        "argv": resolved,
                        "returncode": result.returncode,
                        "duration_s": round(result.duration_s, 3),
                        "log": str(log_file),
                    }
                )
                if tool == "amct_onnx":
                    self._check_amct(request, result)
                else:
                    om = self._check_atc(request, result)
                advance(1)
        header = read_om_header(om)
        for warning in header["warnings"]:
            log.warning("%s: %s", om.name, warning)
        final = self._install(om, Path(request.out_dir), stem)
        manifest = self._manifest(request, route, tk, final, header, records, started)
        artifact = Artifact(
            path=final,
            backend="atc",
            precision=request.precision,
            soc=request.soc,
            manifest=manifest,
        )
        atomic_write_json(artifact.manifest_path, manifest)
        return artifact

    def _check_amct(self, request: ConvertRequest, result: ProcessResult) -> None:
        if result.returncode != 0:
            raise _failure("amct_onnx calibration", f"failed (exit {result.returncode})", result)
        deploy = atc_argv.deploy_model_path(request)
        if not deploy.is_file():
            raise _failure("amct_onnx calibration", f"exited 0 but wrote no {deploy.name}", result)

    def _check_atc(self, request: ConvertRequest, result: ProcessResult) -> Path:
        """Success = exit 0 + 'ATC run success' + `<output>*.om` with a valid IMOD header."""
        if result.returncode != 0:
            raise _failure("atc", f"failed (exit {result.returncode})", result)
        if ATC_SUCCESS not in result.output:
            raise _failure("atc", f"exited 0 without printing '{ATC_SUCCESS}'", result)
        base = atc_argv.work_dir(request) / atc_argv.output_stem(request)
        found = sorted(
            base.parent.glob(glob_escape(base.name) + "*.om"), key=lambda p: p.stat().st_mtime
        )
        if not found:
            raise _failure("atc", f"reported success but wrote no {base.name}*.om", result)
        if len(found) > 1:
            log.warning("atc wrote %d .om files; using the newest, %s", len(found), found[-1].name)
        om = found[-1]
        if not is_real_om(om):
            raise _failure("atc", f"wrote {om.name} without a valid IMOD header", result)
        return om

    @staticmethod
    def _install(om: Path, out_dir: Path, stem: str) -> Path:
        """Move the checked .om into out_dir under atc's name; drop stale builds of this stem."""
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / om.name
        pattern = re.compile(rf"^{re.escape(stem)}(?:{_OS_ARCH_RE})?\.om$")
        for old in out_dir.glob(f"{glob_escape(stem)}*.om"):
            if old.name != final.name and pattern.match(old.name):
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
        os.replace(om, final)
        return final

    def _manifest(
        self,
        request: ConvertRequest,
        route: str,
        tk: Toolkit,
        final: Path,
        header: dict[str, Any],
        records: list[dict[str, Any]],
        started: float,
    ) -> dict[str, Any]:
        stem = atc_argv.output_stem(request)
        tag = final.stem[len(stem) + 1 :] if final.stem != stem else None
        inputs = atc_argv.model_inputs(Path(request.model))
        timings = {f"{r['tool']}_s": r["duration_s"] for r in records}
        timings["total_s"] = round(time.monotonic() - started, 3)
        return {
            "tool": "ascend-quant",
            "tool_version": __version__,
            "backend": "atc",
            "soc": request.soc,
            "cann_version": tk.version,
            "precision": request.precision,
            "route": route,
            "flag_dialect": request.atc.flag_dialect if route == "atc" else None,
            "name": request.name,
            "om": final.name,
            "om_sha256": sha256_file(final),
            "os_arch": tag,
            "source_sha256": request.source_sha256,
            "model": str(request.model),
            "model_sha256": sha256_file(Path(request.model)),
            "input_shapes": {k: list(v) for k, v in request.input_shapes.items()},
            "inputs": [
                {
                    "name": i.name,
                    "dtype": i.dtype,
                    "shape": list(
                        (request.gears.template if request.gears else request.input_shapes).get(
                            i.name, i.shape
                        )
                    ),
                }
                for i in inputs.values()
            ],
            "gears": request.gears.record() if request.gears is not None else None,
            "outputs": _model_outputs(Path(request.model)),
            "aipp": request.aipp.enabled,
            "commands": records,
            "timings": timings,
            "om_header": _header_summary(header),
            "toolkit": {
                "root": str(tk.root) if tk.root else None,
                "atc": str(tk.atc) if tk.atc else None,
                "amct_onnx": str(tk.amct_onnx) if tk.amct_onnx else None,
                "set_env": str(tk.set_env) if tk.set_env else None,
            },
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    # ------------------------------------------------------------ run / bench on the NPU

    def _check_npu(self, om: Path, need_cli: bool = True) -> dict[str, Any]:
        """The om is real, an NPU is visible and its soc is the one the om was built for; the
        ais_bench CLI or msame is found when a file run needs one (`open` imports the API)."""
        om = Path(om)
        if not om.is_file():
            raise not_a_model_file(om)
        if not is_real_om(om):
            raise UsageError(
                f"{om} is not a real Ascend .om (no IMOD header)",
                hint="simulated models run with --backend sim",
            )
        tk = self.toolkit
        if need_cli and tk.ais_bench is None and tk.msame is None:
            raise ToolchainError(
                "neither ais_bench nor msame was found",
                hint="pip install the aclruntime and ais_bench wheels into the toolkit's python "
                "(python3 -m ais_bench must work)",
            )
        if not tk.npu_visible:
            raise ToolchainError(
                "no NPU is visible (`npu-smi info` lists none)",
                hint="run on an Ascend host with the driver installed, or use --backend sim",
            )
        manifest = read_manifest(om)
        soc = manifest.get("soc") or read_om_header(om)["platform_version"] or None
        if soc and str(soc).startswith("Ascend") and tk.npu_soc and soc != tk.npu_soc:
            raise ToolchainError(
                f"{om.name} was built for {soc} but the visible NPU is {tk.npu_soc}; it would "
                "fail to load with EE1001 (ModelCheckCompatibility)",
                hint=f"re-convert with --soc {tk.npu_soc}",
                codes=("EE1001",),
            )
        built, here = _version_tuple(manifest.get("cann_version")), _version_tuple(tk.version)
        if built and here and built > here:
            log.warning(
                "%s was converted with CANN %s but this host has CANN %s; the runtime must not "
                "be older than the converter",
                om.name,
                manifest.get("cann_version"),
                tk.version,
            )
        return manifest

    def open(self, om: Path) -> AisBenchRunner | GearedRunner:
        """The .om on this host's NPU through ais_bench's Python API (checked like `run`)."""
        manifest = self._check_npu(Path(om), need_cli=False)
        gears = Gears.from_record(manifest.get("gears"))
        if gears is None:
            return AisBenchRunner(Path(om), device=self.device)
        runner = AisBenchRunner(Path(om), device=self.device, mode=INFER_MODES[gears.kind])
        return GearedRunner(runner, gears)  # refuses shapes outside the gears before ACL

    @staticmethod
    def can_open(om: Path) -> bool:
        return Path(om).is_file() and is_real_om(Path(om))

    def _runner(self, om: Path, args: list[str]) -> tuple[str, list[str]]:
        tk = self.toolkit
        if tk.ais_bench is not None:
            return "ais_bench", [*tk.ais_bench, "--model", str(om), *args]
        assert tk.msame is not None
        return "msame", [str(tk.msame), "--model", str(om), *args]

    def run(
        self,
        om: Path,
        input_dirs: list[Path],
        output_dir: Path,
        outfmt: str = "BIN",
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> RunResult:
        """One inference per input sample; outputs named `<input stem>_<k>.<fmt>` in output_dir.

        A gear model runs at `gear`, or at the one gear whose input sizes the files have."""
        om = Path(om).absolute()  # the tool runs in output_dir: no path may be relative
        manifest = self._check_npu(om)
        dym = gear_args(om, manifest, gear, input_dirs)
        output_dir = Path(output_dir).resolve()
        input_dirs = [Path(d).absolute() for d in input_dirs]
        output_dir.mkdir(parents=True, exist_ok=True)
        tool, _ = self._runner(om, [])
        if tool == "ais_bench":
            args = [
                "--input", ",".join(str(Path(d)) for d in input_dirs),
                "--output", str(output_dir.parent),
                "--output_dirname", output_dir.name,
                "--outfmt", outfmt,
                "--loop", "1",
                "--device", str(self.device),
            ]  # fmt: skip
        else:
            args = [
                "--input", ",".join(str(Path(d)) for d in input_dirs),
                "--output", str(output_dir),
                "--outfmt", outfmt,
                "--loop", "1",
                "--device", str(self.device),
            ]  # fmt: skip
        _, argv = self._runner(om, args + dym)
        log_file = output_dir / f"{tool}.log"
        log_file.unlink(missing_ok=True)
        with progress.task(f"{tool} {om.name}") as advance:
            result = run_streaming(
                argv, self.toolkit.env, output_dir, log_file, 3600.0, self.status
            )
            advance(1)
        if result.returncode != 0:
            raise _failure(tool, f"failed (exit {result.returncode})", result)
        names = [o["name"] for o in manifest.get("outputs", [])]
        if tool == "ais_bench":
            summary_path = output_dir.parent / f"{output_dir.name}_summary.json"
            summary: dict[str, Any] = {}
            if summary_path.is_file():
                summary = load_summary_json(summary_path)
                os.replace(summary_path, output_dir / summary_path.name)
            groups = [[output_dir / p.name for p in g] for g in group_outputs(summary)]
            latencies = compute_times(summary)
        else:
            groups, latencies = [], parse_msame(result.output)
        if not groups:
            groups = _group_by_stem(output_dir, outfmt)
        if not groups:
            raise _failure(tool, "wrote no output files", result)
        if not names:
            names = [f"output_{k}" for k in range(len(groups[0]))]
        return RunResult(
            output_dir=output_dir, outputs=groups, output_names=names, latencies_ms=latencies
        )

    def bench(
        self,
        om: Path,
        config: BenchConfig,
        progress: Progress = NULL_PROGRESS,
        gear: str | None = None,
    ) -> BenchResult:
        """ais_bench --loop/--warmup_count/--batchsize on pure (zero) data; msame as fallback.

        A gear model is benchmarked at `gear` (its flag derived from the manifest)."""
        om = Path(om).absolute()  # the tool runs in a temporary directory
        manifest = self._check_npu(om)
        # ais_bench runs a fixed --loop: the time budget (duration_s) applies to the simulator.
        dym = gear_args(om, manifest, gear)
        gears = Gears.from_record(manifest.get("gears"))
        if gears is not None and gears.kind == "batch" and config.batch_size is None:
            config = replace(config, batch_size=int(dym[1]))
        batch = config.batch_size or _manifest_batch(manifest) or 1
        with tempfile.TemporaryDirectory(prefix="ascend-quant-bench-") as tmp:
            out = Path(tmp)
            tool, _ = self._runner(om, [])
            if tool == "ais_bench":
                args = [
                    "--output", str(out),
                    "--output_dirname", "bench",
                    "--outfmt", "BIN",
                    "--loop", str(config.loop),
                    "--warmup_count", str(config.warmup),
                    "--device", str(config.device),
                    "--batchsize", str(batch),
                ]  # fmt: skip
            else:
                args = [
                    "--output", str(out),
                    "--loop", str(min(max(config.loop, 1), 100)),
                    "--device", str(config.device),
                ]  # fmt: skip
            _, argv = self._runner(om, args + dym)
            with progress.task(f"{tool} {om.name}", total=None) as advance:
                result = run_streaming(
                    argv, self.toolkit.env, out, out / f"{tool}.log", 3600.0, self.status
                )
                advance(1)
            if result.returncode != 0:
                error = _failure(tool, f"failed (exit {result.returncode})", result)
                error.message = error.message.split(" (log: ")[0]
                raise error
            extra: dict[str, Any] = {"tool": tool, "argv": argv}
            if gears is not None:
                extra["gear"] = gears.label(gears.index(str(gear)))
            if tool == "ais_bench":
                path = find_summary_json(out)
                summary = load_summary_json(path) if path else parse_summary_text(result.output)
                if not summary:
                    raise ToolchainError(
                        "ais_bench printed no Performance Summary and wrote no _summary.json",
                        hint="run the printed command by hand to see what ais_bench says",
                    )
                stats, missing = latency_stats(summary)
                if "throughput" in summary:
                    extra["ais_bench_throughput"] = float(summary["throughput"])
            else:
                times = parse_msame(result.output)
                if not times:
                    raise ToolchainError("msame printed no 'Inference time' lines")
                stats, missing = _stats_from_times(times), []
        if missing:
            extra["missing"] = missing
        throughput = 1000.0 * batch / stats.mean if stats.mean > 0 else 0.0
        return BenchResult(
            model=str(om),
            backend="atc",
            device=f"npu:{config.device}",
            simulated=False,
            precision=manifest.get("precision"),
            soc=manifest.get("soc") or self.toolkit.npu_soc,
            batch_size=batch,
            latency_ms=stats,
            throughput=throughput,
            file_size_bytes=om.stat().st_size,
            extra=extra,
            gear=extra.get("gear"),
            peak_memory_bytes=None,
            memory_source="unknown: ais_bench and msame do not report device memory",
        )


def gear_args(
    om: Path, manifest: dict[str, Any], gear: str | None, input_dirs: list[Path] | None = None
) -> list[str]:
    """ais_bench's gear flag for `gear`, derived from the manifest, so the benchmark always
    asks for a gear the model was converted with (a wrong one is an error before ais_bench)."""
    gears = Gears.from_record(manifest.get("gears"))
    if gears is None:
        if gear is not None:
            raise UsageError(
                f"{om.name} has no gears in its manifest (converted with static shapes); "
                f"gear {gear} does not apply",
                hint="drop --gear, or re-convert with --dynamic-batch/--dynamic-image-size/"
                "--dynamic-dims",
            )
        if not manifest and read_om_header(om)["dynamic"]:
            raise UsageError(
                f"{om.name} is a dynamic model without the manifest (<stem>.json) that lists "
                "its gears",
                hint="keep the manifest beside the .om, or convert it with ascend-quant",
            )
        return []
    if gear is None and input_dirs:
        dtypes = {i["name"]: i.get("dtype", "float32") for i in manifest.get("inputs", [])}
        index = gear_of_files(gears, dtypes, input_dirs)
    elif gear is None:
        raise UsageError(
            f"{om.name} has {gears.kind} gears ({', '.join(gears.labels)}); say which to run",
            hint=f"pass --gear, e.g. --gear {gears.label(gears.calib_index)}",
        )
    else:
        index = gears.index(str(gear))
    return gears.aisbench_args(index)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _manifest_batch(manifest: dict[str, Any]) -> int | None:
    inputs = manifest.get("inputs") or []
    if inputs and inputs[0].get("shape") and isinstance(inputs[0]["shape"][0], int):
        first = int(inputs[0]["shape"][0])
        return first if first > 0 else None
    return None


def _stats_from_times(times: list[float]) -> LatencyStats:

    arr = np.asarray(times, dtype=np.float64)
    p = {q: float(np.percentile(arr, q)) for q in (50, 90, 95, 99)}
    return LatencyStats(
        count=len(times),
        min=float(arr.min()),
        mean=float(arr.mean()),
        median=p[50],
        p90=p[90],
        p95=p[95],
        p99=p[99],
        max=float(arr.max()),
    )


_OUT_NAME = re.compile(r"^(?P<stem>.+?)(?:_output)?_(?P<k>\d+)\.(?:bin|npy|txt)$")


def _group_by_stem(output_dir: Path, outfmt: str) -> list[list[Path]]:
    """outputs[i][k] from file names `<stem>_<k>.<fmt>` when no summary lists them."""
    from ascend_quant.aisbench_io import natural_key

    groups: dict[str, dict[int, Path]] = {}
    for path in output_dir.rglob(f"*.{outfmt.lower()}"):
        match = _OUT_NAME.match(path.name)
        if match:
            groups.setdefault(match.group("stem"), {})[int(match.group("k"))] = path
    ordered = sorted(groups.items(), key=lambda item: natural_key(item[0]))
    return [[files[k] for k in sorted(files)] for _, files in ordered]


__all__ = ["AtcBackend", "ProcessResult", "commands_for", "parse_msame", "run_streaming"]
