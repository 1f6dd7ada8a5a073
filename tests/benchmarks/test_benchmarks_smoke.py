"""Smoke tests of the benchmark scripts: each main() runs with tiny settings and the eager kernel.

They check that the scripts still run against the current API and that their tables
hold sane values; they measure nothing. The compiled NA kernel is not exercised here
because compiling it takes from seconds (T = 5) to minutes (T = 30).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from na_lightning.functional import lif_psc
from na_lightning.lightning.classifier import NAClassifier

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT_MODULES = ("common", "bench_training_step", "bench_peers", "bench_na_backward", "bench_inference")
TINY_RUN = ["--repeats", "2", "--warmup", "1", "--batch-size", "2"]
SINGLE_RUN = ["--repeats", "1", "--warmup", "0", "--batch-size", "2"]


@pytest.fixture(scope="module")
def benchmarks():
    """Import the scripts as modules; they import their sibling ``common`` by name."""
    sys.path.insert(0, str(BENCHMARKS_DIR))
    try:
        yield {
            name: importlib.import_module(name)
            for name in SCRIPT_MODULES
        }
    finally:
        sys.path.remove(str(BENCHMARKS_DIR))


@pytest.fixture(autouse=True)
def keep_thread_count():
    """Restore torch's thread count, which ``--threads`` changes for the whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_markdown_table_alignment(benchmarks):
    table = benchmarks["common"].markdown_table(("name", "ms"), [("NA", "1.50"), ("STBP", "n/a")])
    lines = table.splitlines()

    assert lines == [
        "| name |   ms |",
        "| ---- | ---: |",
        "| NA   | 1.50 |",
        "| STBP |  n/a |",
    ]


def test_markdown_table_without_rows(benchmarks):
    table = benchmarks["common"].markdown_table(("name", "ms"), [])

    assert table.splitlines() == ["| name | ms  |", "| ---- | --- |"]


def test_time_interleaved_call_counts(benchmarks):
    calls = {"a": 0, "b": 0}

    def count(name):
        calls[name] += 1

    timings = benchmarks["common"].time_interleaved(
        {"a": lambda: count("a"), "b": lambda: count("b")}, device=torch.device("cpu"), repeats=3, warmup=2
    )

    assert calls == {"a": 6, "b": 6}
    assert len(timings["a"].times_s) == 3
    assert timings["b"].first_s >= 0.0
    assert timings["a"].compile_s >= 0.0


def test_saved_tensor_bytes_counts_storages_once(benchmarks):
    inputs = torch.rand(5, 1000, requires_grad=True)

    # Both views of `inputs` save its 20000-byte storage once; mul saves both 2 x 1000 sines.
    result, saved = benchmarks["common"].saved_tensor_bytes(lambda: inputs[:2].sin() * inputs[3:].sin())

    assert saved == 20000 + 2 * 8000
    assert result.shape == (2, 1000)


def test_saved_tensor_bytes_of_na_is_potential(benchmarks):
    current = torch.rand(5, 1000, requires_grad=True)

    saved_tensor_bytes = benchmarks["common"].saved_tensor_bytes

    _, saved = saved_tensor_bytes(lambda: lif_psc(current * 2.0, grad="na", kernel="eager"))

    # NA keeps only the membrane potential [T, N] in float32.
    assert saved == 5 * 1000 * 4


def test_training_step_rows(benchmarks, capsys):
    rows = benchmarks["bench_training_step"].main([*TINY_RUN, "--kernel", "eager", "--threads", "1"])
    output = capsys.readouterr().out

    configurations = [(row["time_steps"], row["method"]) for row in rows]
    assert configurations == [(5, "NA"), (5, "STBP"), (30, "NA"), (30, "STBP")]
    assert torch.get_num_threads() == 1
    assert "saved for backward MB" in output
    assert "CPU threads: 1" in output
    for row in rows:
        assert row["step_ms"] > 0.0
        assert row["memory_mb"] > 0.0
        if row["method"] == "STBP":
            assert row["step_ratio"] == pytest.approx(1.0)
            assert row["memory_ratio"] == pytest.approx(1.0)


def test_training_step_na_memory_covers_potentials(benchmarks):
    rows = benchmarks["bench_training_step"].main([*TINY_RUN, "--kernel", "eager", "--networks", "mnist"])
    na_row = rows[0]

    # NA saves each layer's potential [T, B, ...]; the convolutions and linear layers save their weights.
    neurons = 15 * 24 * 24 + 40 * 8 * 8 + 300 + 10
    potentials = 5 * 2 * neurons * 4
    weights = 4 * sum(parameter.numel() for parameter in NAClassifier().parameters())
    assert na_row["method"] == "NA"
    assert na_row["memory_mb"] * 2**20 >= potentials + weights


def test_layer_plan_of_mnist(benchmarks):
    plan = benchmarks["bench_peers"].layer_plan(benchmarks["bench_training_step"].NETWORKS["mnist"])

    assert plan == [
        ("conv", 1, 15, 5, 0),
        ("pool", 2),
        ("conv", 15, 40, 5, 0),
        ("pool", 2),
        ("linear", 640, 300),
        ("linear", 300, 10),
    ]


def test_peers_build_equal_networks(benchmarks):
    pytest.importorskip("snntorch")
    pytest.importorskip("spikingjelly")

    rows = benchmarks["bench_peers"].main([*SINGLE_RUN, "--kernel", "eager", "--threads", "1"])

    labels = {row["library"] for row in rows}
    assert labels == {
        "na_lightning NA",
        "na_lightning STBP",
        "snnTorch Synaptic",
        "SpikingJelly CUBALIFNode",
        "SpikingJelly LIFNode",
    }
    for network in ("MNIST", "N-MNIST"):
        sizes = {row["parameters"] for row in rows if row["network"].startswith(network + " ")}
        assert len(sizes) == 1, f"{network}: libraries built networks of different sizes {sizes}"
    for row in rows:
        assert row["step_ms"] > 0.0
        assert row["memory_mb"] > 0.0
        if row["library"] == "na_lightning NA":
            assert row["na_ratio"] == pytest.approx(1.0)


def test_peers_without_peer_libraries(benchmarks, capsys):
    rows = benchmarks["bench_peers"].main([*TINY_RUN, "--kernel", "eager", "--networks", "mnist", "--peers"])

    assert [row["library"] for row in rows] == ["na_lightning NA", "na_lightning STBP"]
    assert "peer libraries: none" in capsys.readouterr().out


def test_na_backward_rows(benchmarks, capsys):
    rows = benchmarks["bench_na_backward"].main(
        [*SINGLE_RUN, "--kernel", "eager", "--neurons", "3000", "--time-steps", "5", "10", "50"]
    )
    output = capsys.readouterr().out

    assert [row["time_steps"] for row in rows] == [5, 10]
    assert "Skipped T = 50 (above --max-t 30)" in output
    assert rows[0]["ratio_to_t5"] == pytest.approx(1.0)
    for row in rows:
        assert row["neurons"] == 3000
        assert 0.1 <= row["firing_rate"] <= 0.2
        assert row["ns_per_neuron"] > 0.0
        assert row["compile_s"] is None
        assert row["io_mb"] == pytest.approx(3 * row["time_steps"] * 3000 * 4 / 2**20)


def test_na_backward_chain_table(benchmarks, capsys):
    benchmarks["bench_na_backward"].main(
        [*SINGLE_RUN, "--kernel", "eager", "--neurons", "2000", "--time-steps", "5", "10"]
    )
    output = capsys.readouterr().out

    assert "dense vs exact early exit" in output
    # Dense work per neuron is T + T (T - 1) / 2: 15 at T = 5 and 55 at T = 10.
    assert " 55.0 |" in output
    assert " 3.67 |" in output


def test_chain_steps_stop_at_rejoin(benchmarks):
    chain_steps = benchmarks["bench_na_backward"].chain_steps
    # Neighbor 0 loses the spike at step 0 (membrane 1 instead of 0), fires at step 1 like
    # the original, and both reset: one chain step. Neighbor 1 loses its spike too and
    # runs to the last step: one chain step. Dense simulation takes 3.
    potential = torch.tensor([[2.0], [2.0], [0.5]])

    assert chain_steps(potential, 0.8, 1.0).tolist() == [2.0]
    # Silent at steps 0 and 1: both gained-spike neighbors keep a gap to the last step.
    assert chain_steps(torch.tensor([[0.5], [0.5], [2.0]]), 0.8, 1.0).tolist() == [3.0]


def test_na_backward_neuron_count_above_t30(benchmarks):
    neuron_count = benchmarks["bench_na_backward"].neuron_count

    assert neuron_count(30, 1_000_000) == 1_000_000
    assert neuron_count(50, 1_000_000) == 600_000
    assert neuron_count(100, 1_000_000) == 300_000


def test_na_backward_rejects_max_t_below_all(benchmarks):
    with pytest.raises(SystemExit):
        benchmarks["bench_na_backward"].main(["--time-steps", "50", "--max-t", "30"])


def test_inference_empty_registry(benchmarks, tmp_path, capsys):
    rows = benchmarks["bench_inference"].main([*TINY_RUN, "--zoo-dir", str(tmp_path)])

    assert rows == []
    assert "No zoo model matches '*'" in capsys.readouterr().out


def _write_entry(zoo_dir: Path, name: str, builder: dict, input_spec: dict) -> None:
    num_params = sum(parameter.numel() for parameter in NAClassifier(**builder).parameters())
    entry = {
        "name": name,
        "dataset": "mnist",
        "builder": builder,
        "input": input_spec,
        "classes": [str(index) for index in range(builder["num_classes"])],
        "weights": None,
        "metrics": [],
        "num_params": num_params,
        "recipe": {"config": None, "epochs": 0, "seed": None, "hardware": None, "wall_time_s": None},
        "license": "CC0-1.0",
    }
    (zoo_dir / f"{name}.json").write_text(json.dumps(entry))


def test_inference_untrained_models(benchmarks, tmp_path, capsys):
    shared = {"num_classes": 3, "tau_m": 5.0, "tau_s": 2.0, "theta": 1.0, "padding": 0, "loss": "kernel"}
    analog_builder = {
        **shared,
        "architecture": "4C3-P2-8",
        "input_shape": [1, 8, 8],
        "time_steps": 4,
        "encoding": "analog",
    }
    events_builder = {
        **shared,
        "architecture": "4C3-P2",
        "input_shape": [2, 8, 8],
        "time_steps": 6,
        "encoding": "events",
    }
    _write_entry(
        tmp_path,
        "tiny_analog.bench",
        analog_builder,
        {"shape": [1, 8, 8], "encoding": "analog", "mean": [0.5], "std": [0.25]},
    )
    _write_entry(
        tmp_path,
        "tiny_events.bench",
        events_builder,
        {"shape": [2, 8, 8], "encoding": "events", "sensor_size": [8, 8, 2], "time_bin_us": 1000.0},
    )

    rows = benchmarks["bench_inference"].main([*TINY_RUN, "--zoo-dir", str(tmp_path), "--kernel", "eager"])

    assert [row["model"] for row in rows] == ["tiny_analog.bench", "tiny_events.bench"]
    assert [row["time_steps"] for row in rows] == [4, 6]
    for row in rows:
        assert row["weights"] == "random init"
        assert row["samples_per_s"] == pytest.approx(2 / (row["batch_ms"] / 1e3))
    assert "| tiny_events.bench" in capsys.readouterr().out
