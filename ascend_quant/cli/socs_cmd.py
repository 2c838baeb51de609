"""`ascend-quant socs`: every known --soc_version with its family and capabilities."""

from __future__ import annotations

from rich.table import Table

from ascend_quant.cli.common import JSON_OPTION, console, print_json
from ascend_quant.soc import all_socs


def _mark(value: bool) -> str:
    return "yes" if value else "-"


def socs(json_output: bool = JSON_OPTION) -> None:
    """List the soc_version strings atc accepts, with product family and INT8 capabilities."""
    infos = all_socs()
    if json_output:
        print_json([{**info.__dict__, "int8_routes": list(info.int8_routes)} for info in infos])
        return
    table = Table(title="Ascend soc_version values", title_justify="left")
    table.add_column("soc_version", no_wrap=True)
    for column in ("family", "products", "ATC calib", "first-layer", "w8", "ranges"):
        table.add_column(column)
    table.add_column("notes", overflow="fold")
    for info in infos:
        notes = "reserved, not yet supported" if not info.supported else (info.warning or "")
        table.add_row(
            info.name,
            info.family,
            info.products,
            _mark(info.atc_calibration),
            _mark(info.first_layer_quantization),
            _mark(info.weight_compress_only),
            _mark(info.dynamic_shape_range),
            notes,
        )
    console.print(table)
    console.print(
        "ATC calib: INT8 calibration inside atc (--compression_optimize_conf, needs an NPU); "
        "amct_onnx (CPU) works for every soc. first-layer: enable_first_layer_quantization. "
        "w8: weight-only INT8 (weight_compress_only, --precision w8). "
        "ranges: dynamic shape ranges (1~10) in --input_shape. On a device, `npu-smi info` "
        "shows the name (A3: <Chip Name>_<NPU Name>)."
    )
