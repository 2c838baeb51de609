from __future__ import annotations

import json
import struct

import numpy as np
from typer.testing import CliRunner

from ascend_quant.backends.base import ConvertRequest
from ascend_quant.backends.sim import SimBackend
from ascend_quant.cli.app import app, main

runner = CliRunner()


def _exit(args: list[str], capsys) -> tuple[int, str]:
    """Run the real entry point (error -> exit code mapping) and return (code, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _om(sr_model, tmp_path):
    request = ConvertRequest(
        model=sr_model,
        source_sha256="0" * 64,
        input_shapes={"input": (1, 3, 16, 16)},
        soc="Ascend310P3",
        precision="fp16",
        out_dir=tmp_path,
        name="sr",
    )
    return SimBackend().convert(request).path


def _inputs(tmp_path, count=2):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        np.full((1, 3, 16, 16), i, np.float32).tofile(folder / f"s{i}.bin")
    return folder


def test_run_json(sr_model, tmp_path):
    om = _om(sr_model, tmp_path)
    result = runner.invoke(
        app,
        [
            "run",
            str(om),
            "--input",
            str(_inputs(tmp_path)),
            "--output",
            str(tmp_path / "o"),
            "--outfmt",
            "npy",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inferences"] == 2 and data["output_names"] == ["output"]
    assert [p[0].rsplit("/", 1)[1] for p in data["outputs"]] == ["s0_0.npy", "s1_0.npy"]
    assert len(data["latencies_ms"]) == 2


def test_run_size_mismatch_is_usage_error(sr_model, tmp_path, capsys):
    om = _om(sr_model, tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.zeros(7, np.float32).tofile(bad / "x.bin")
    code, err = _exit(
        ["run", str(om), "--input", str(bad), "--output", str(tmp_path / "o")], capsys
    )
    assert code == 2
    err = " ".join(err.split())
    assert "3072 bytes" in err and "file size 28 bytes" in err


def test_run_npy_of_another_shape_is_refused(sr_model, tmp_path, capsys):
    """An .npy file says its shape: a quarter-size tensor (4 copies joined) or an NHWC one
    (reshaped) ran and wrote plausible wrong outputs; now one error line, exit 2, no outputs."""
    om = _om(sr_model, tmp_path)
    for i, array in enumerate(
        (np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 16, 16, 3), np.float32))
    ):
        bad = tmp_path / f"bad{i}"
        bad.mkdir()
        np.save(bad / "x.npy", array)
        out = tmp_path / f"o{i}"
        code, err = _exit(["run", str(om), "--input", str(bad), "--output", str(out)], capsys)
        err = " ".join(err.split())
        assert code == 2 and f"holds {list(array.shape)}" in err, err
        assert "[1, 3, 16, 16]" in err and "Traceback" not in err
        assert not any(out.glob("*")) if out.exists() else True
    good = tmp_path / "good"
    good.mkdir()
    np.save(good / "a.npy", np.zeros((3, 16, 16), np.float32))  # leading 1 left out: fine
    code, err = _exit(
        ["run", str(om), "--input", str(good), "--output", str(tmp_path / "g")], capsys
    )
    assert code == 0, err


def test_run_backend_mismatch_and_real_om(sr_model, tmp_path, capsys):
    om = _om(sr_model, tmp_path)
    inputs = _inputs(tmp_path)
    out = str(tmp_path / "o")
    code, err = _exit(["run", str(om), "-i", str(inputs), "-o", out, "--backend", "atc"], capsys)
    assert code == 2 and "simulated" in err and "--backend sim" in err
    head = bytearray(256)
    head[0:4] = b"IMOD"
    struct.pack_into("<I", head, 4, 256)
    real = tmp_path / "real.om"
    real.write_bytes(bytes(head))
    code, err = _exit(["run", str(real), "-i", str(inputs), "-o", out, "--backend", "sim"], capsys)
    assert code == 2 and "real" in err


def test_run_bad_outfmt(sr_model, tmp_path, capsys):
    om = _om(sr_model, tmp_path)
    out = str(tmp_path / "o")
    code, err = _exit(["run", str(om), "-i", str(tmp_path), "-o", out, "--outfmt", "png"], capsys)
    assert code == 2 and "outfmt" in err


def test_run_repeated_input_counts_every_folder(sr_model, tmp_path, capsys):
    """`--input A --input B` is `--input A,B` (it kept only B): two folders for one input."""
    om = _om(sr_model, tmp_path)
    folder = str(_inputs(tmp_path))
    args = ["run", str(om), "--input", folder, "--input", folder, "--output", str(tmp_path / "o")]
    code, err = _exit(args, capsys)
    same_code, same_err = _exit([*args[:3], f"{folder},{folder}", *args[6:]], capsys)
    assert code == same_code == 2 and err == same_err
    assert "2 input path(s) were given" in err
