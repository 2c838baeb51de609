"""compare on the atc backend: in-process through ais_bench's Python API (the stand-in
`InferSession`), or through the command line's files where that API is missing; both give the
same figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fakes.cann import make_calib_set, use_aisbench_python_api

from ascend_quant.backends.atc import AtcBackend
from ascend_quant.compare import compare_models
from ascend_quant.config import Thresholds

FILES_NOTE = "ran through output files (ais_bench's Python API is not importable here)"


def _figures(result) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    return result.candidates[0].outputs[0].metrics


def test_compare_in_process_and_through_files_agree(
    fake_cann, make_request, conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    om = AtcBackend().convert(make_request()).path
    inputs = make_calib_set(tmp_path / "eval", samples=3) / "samples"
    by_files = compare_models(conv_model, [om], [inputs], tmp_path / "files", Thresholds())
    assert FILES_NOTE in by_files.candidates[0].outputs[0].notes
    assert (tmp_path / "files/outputs" / om.stem).is_dir()

    use_aisbench_python_api(monkeypatch)
    in_process = compare_models(conv_model, [om], [inputs], tmp_path / "npu", Thresholds())
    assert not any("output files" in n for n in in_process.candidates[0].outputs[0].notes)
    assert not (tmp_path / "npu/outputs" / om.stem).exists()
    assert in_process.candidates[0].backend == "atc" and in_process.samples == 3
    a, b = _figures(by_files), _figures(in_process)
    assert list(a) == list(b)
    for key, value in a.items():
        other = b[key]
        if value is None or other is None:
            assert value is other, key
        else:
            assert math.isclose(value, other, rel_tol=1e-12) or (
                math.isnan(value) and math.isnan(other)
            ), key


def test_in_process_compare_refuses_a_model_for_another_npu(
    fake_cann, make_request, conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ascend_quant.errors import ToolchainError

    om = AtcBackend().convert(make_request()).path
    inputs = make_calib_set(tmp_path / "eval", samples=1) / "samples"
    use_aisbench_python_api(monkeypatch)
    fake_cann(FAKE_NPU_NAME="910B3")
    with pytest.raises(ToolchainError, match="visible NPU is Ascend910B3"):
        compare_models(conv_model, [om], [inputs], tmp_path / "out", Thresholds())


def test_in_process_compare_needs_no_command_line_runner(
    fake_cann, make_request, conv_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host with ais_bench's Python API but neither its CLI nor msame still compares."""
    from ascend_quant.backends.toolkit import discover

    om = AtcBackend().convert(make_request()).path
    inputs = make_calib_set(tmp_path / "eval", samples=2) / "samples"
    monkeypatch.delenv("PYTHONPATH")  # `python3 -m ais_bench` no longer finds the module
    discover.cache_clear()
    assert discover().ais_bench is None and discover().msame is None
    use_aisbench_python_api(monkeypatch)
    result = compare_models(conv_model, [om], [inputs], tmp_path / "npu", Thresholds())
    assert result.samples == 2 and result.candidates[0].backend == "atc"
