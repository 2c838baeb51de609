"""`ascend-quant doctor [--json] [--socs]`: what this machine can do, and what `auto` picks."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from importlib import metadata
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ascend_quant.__about__ import __version__
from ascend_quant.cli.common import JSON_OPTION, console, print_json, styled

PACKAGES = ("onnx", "onnxruntime", "onnxsim", "numpy", "jinja2", "typer", "rich", "pillow")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None when it is missing."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def doctor_report(include_socs: bool = False) -> dict[str, Any]:
    """Python, packages, the CANN toolkit and NPU as discovered, and the `auto` backend."""
    from ascend_quant.backends import auto_backend_name
    from ascend_quant.backends.toolkit import discover

    toolkit = discover()
    backend = auto_backend_name()
    report: dict[str, Any] = {
        "ascend_quant": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": package_versions(),
        "toolkit": toolkit.as_dict(),
        "auto_backend": backend,
        "auto_int8_route": (
            "atc (on the visible NPU) or amct, per soc"
            if toolkit.npu_visible
            else ("amct (CPU calibration, no NPU visible)" if toolkit.found else None)
        ),
    }
    if include_socs:
        try:
            from ascend_quant.soc import all_socs
        except ImportError:
            report["socs"] = None
        else:
            report["socs"] = [asdict(info) for info in all_socs()]
    return report


def _mark(value: object, detail: str | None = None) -> Text:
    mark = ("yes", "green") if value else ("no", "red")
    return styled(mark, f" {detail}" if detail else "")


def doctor(
    socs: bool = typer.Option(False, "--socs", help="Also list every known soc_version."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show the Python environment, the CANN toolkit and NPU found, and the backend `auto` uses."""
    report = doctor_report(include_socs=socs)
    if json_output:
        print_json(report)
        return
    table = Table(title=f"ascend-quant {report['ascend_quant']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("python", f"{report['python']['version']} ({report['python']['executable']})")
    for name, version in report["packages"].items():
        table.add_row(name, version or styled(("missing", "red")))
    tk = report["toolkit"]
    table.add_row("CANN toolkit", _mark(tk["found"], tk["root"]))
    table.add_row("CANN version", tk["version"] or "unknown")
    if tk["set_env"]:
        table.add_row("set_env.sh", tk["set_env"])
    for tool, path in tk["tools"].items():
        table.add_row(tool, path or styled(("not found", "red")))
    table.add_row("NPU visible", _mark(tk["npu_visible"], tk["npu_soc"]))
    table.add_row("backend auto", report["auto_backend"])
    if report["auto_int8_route"]:
        table.add_row("INT8 route auto", report["auto_int8_route"])
    console.print(table)
    if not tk["found"]:
        console.print(
            "no CANN toolkit: `auto` uses the simulator. To use the real toolkit, source "
            "/usr/local/Ascend/ascend-toolkit/set_env.sh (or /usr/local/Ascend/cann/set_env.sh)."
        )
    if socs and report.get("socs"):
        soc_table = Table(title="soc_version")
        for column in ("name", "family", "products", "ATC calibration"):
            soc_table.add_column(column)
        for info in report["socs"]:
            soc_table.add_row(
                info["name"], info["family"], info["products"], _mark(info["atc_calibration"])
            )
        console.print(soc_table)
