from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
from fake_backend import Perturb, install, make_om

from ascend_quant.bench import bench_models, bench_table, latency_stats, time_loop
from ascend_quant.config import BenchConfig, to_mapping
from ascend_quant.errors import UsageError


def test_latency_stats_and_time_loop() -> None:
    stats = latency_stats(list(range(1, 101)))
    assert (stats.count, stats.min, stats.max, stats.median) == (100, 1.0, 100.0, 50.5)
    assert stats.p99 == pytest.approx(99.01)
    calls: list[int] = []
    samples = time_loop(lambda: calls.append(1), warmup=3, loop=10)
    assert len(calls) == 13 and len(samples) == 10 and min(samples) >= 0
    with pytest.raises(ValueError):
        latency_stats([])


def test_bench_models_ratios_against_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "m.onnx")
    fp16 = make_om(tmp_path / "m_fp16.om", size=4000)
    int8 = make_om(tmp_path / "m_int8.om", size=1000)
    install(
        monkeypatch,
        model,
        {"m_fp16.om": Perturb(latency_ms=2.0), "m_int8.om": Perturb(latency_ms=1.0)},
    )
    table = bench_models([fp16, int8], BenchConfig(warmup=0, loop=5, batch_size=4))
    first, second = table.rows
    assert first.speedup is None and first.size_ratio is None
    assert second.speedup == pytest.approx(2.0)
    assert second.size_ratio == pytest.approx(0.25)
    assert second.throughput_ratio == pytest.approx(2.0)
    assert second.result.batch_size == 4 and table.simulated
    data = to_mapping(table)
    assert data["rows"][1]["speedup"] == pytest.approx(2.0)
    assert data["config"]["loop"] == 5


@pytest.mark.parametrize(
    "config, message",
    [
        (BenchConfig(loop=0), "--loop"),
        (BenchConfig(warmup=-1), "--warmup"),
        (BenchConfig(duration_s=0.0), "--duration"),
        (BenchConfig(batch_size=0), "--batch-size"),
    ],
)
def test_bad_settings(tmp_path: Path, config: BenchConfig, message: str) -> None:
    om = make_om(tmp_path / "a.om")
    with pytest.raises(UsageError, match=message):
        bench_models([om], config)


def test_no_models_and_unknown_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no models"):
        bench_models([], BenchConfig())
    with pytest.raises(UsageError, match="neither a real Ascend"):
        bench_models([make_om(tmp_path / "junk.om")], BenchConfig())


def test_bench_table_handles_zero_size() -> None:
    assert bench_table([], BenchConfig()).rows == []


def test_simulated_bench_of_real_sim_om(tmp_path: Path) -> None:
    """The simulator's own bench through bench_models: figures are measured, not made up."""
    from ascend_quant.backends.base import ConvertRequest
    from ascend_quant.backends.sim import SimBackend
    from ascend_quant.workspace import sha256_file

    model = tiny_models.save(tiny_models.conv_net(), tmp_path / "c.onnx")
    request = ConvertRequest(
        model=model,
        source_sha256=sha256_file(model),
        input_shapes={"input": (1, 3, 16, 16)},
        soc="Ascend310P3",
        precision="fp16",
        out_dir=tmp_path / "om",
        name="c",
    )
    om = SimBackend().convert(request).path
    table = bench_models([om, om], BenchConfig(warmup=1, loop=8))
    a, b = table.rows
    assert a.result.simulated and a.result.latency_ms.count == 8
    assert a.result.latency_ms.min <= a.result.latency_ms.median <= a.result.latency_ms.max
    assert b.size_ratio == 1.0 and b.speedup is not None and b.speedup > 0
    assert len(b.speedup_rounds or []) == 4 and b.speedup_spread is not None
    assert a.result.extra["warmup"] == 1 and len(a.result.extra["round_medians_ms"]) == 4


def test_interleaved_rounds_alternate_and_respect_budget_and_minimum() -> None:
    import time

    from ascend_quant.runners.timing import interleaved_loop

    calls: list[str] = []

    def step(name: str, seconds: float = 0.0):  # type: ignore[no-untyped-def]
        def run() -> None:
            calls.append(name)
            time.sleep(seconds)

        return run

    samples = interleaved_loop([step("a"), step("b")], 1, 8, None, 5)
    timed = calls[2:]  # after one warm-up each
    assert (
        timed
        == ["a"] * 2
        + ["b"] * 2
        + ["b"] * 2
        + ["a"] * 2
        + ["a"] * 2
        + ["b"] * 2
        + ["b"] * 2
        + ["a"] * 2
    )
    assert [len(r) for r in samples[0]] == [2, 2, 2, 2]

    calls.clear()
    slow = interleaved_loop([step("s", 0.02)], 0, 1000, 0.05, 3)
    assert sum(len(r) for r in slow[0]) == 3  # the budget allows ~2; the minimum is 3
    assert calls.count("s") == 4  # one warm-up (to estimate) even with warmup=0

    calls.clear()
    capped = interleaved_loop([step("c")], 0, 2, None, 5)
    assert sum(len(r) for r in capped[0]) == 2  # --loop is the most, even below the minimum


def test_interleaved_budget_is_shared_by_the_models() -> None:
    import time

    from ascend_quant.runners.timing import interleaved_loop

    def step() -> None:
        time.sleep(0.01)

    # 0.2 s in all: ~0.1 s (~10 runs of 10 ms) each, not 0.2 s each
    samples = interleaved_loop([step, step], 1, 1000, 0.2, 2)
    counts = [sum(len(r) for r in model) for model in samples]
    assert all(2 <= c <= 12 for c in counts), counts


def test_settings_line_states_the_shared_budget() -> None:
    from ascend_quant.bench import describe_settings

    line = describe_settings(BenchConfig(duration_s=2.0), rows=3)
    assert "2 s budget in all (0.67 s for each of the 3 rows)" in line
    assert "budget" not in describe_settings(BenchConfig(duration_s=None), rows=3)
    assert "at most 3 and at least 3 timed runs" in describe_settings(BenchConfig(loop=3))


def test_models_timed_one_by_one_split_the_budget(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A backend without interleaving gets each model its share of the one budget."""
    from fake_backend import FakeBackend

    seen: list[float | None] = []
    original = FakeBackend.bench

    def bench(self, om, config, progress=None):  # type: ignore[no-untyped-def]
        seen.append(config.duration_s)
        return original(self, om, config)

    monkeypatch.setattr(FakeBackend, "bench", bench)
    oms = [make_om(tmp_path / f"m{i}_fp16.om") for i in range(4)]
    install(monkeypatch, tiny_models.save(tiny_models.conv_net(), tmp_path / "m.onnx"),
            {om.name: Perturb() for om in oms})  # fmt: skip
    table = bench_models(oms, BenchConfig(duration_s=2.0))
    assert seen == [0.5] * 4 and table.config.duration_s == 2.0
