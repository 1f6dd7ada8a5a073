"""Tests of the NA variant study: settings, aggregation, resuming, the command and one real run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from na_lightning.experiments import variants
from na_lightning.experiments.variants import (
    VariantStudySettings,
    append_run,
    compare_options,
    library_default_variant,
    read_runs,
    run_study,
    summarize,
    variant_grid,
)

DEFAULT_NA = "na/error=code,distance=code,rescale=off"
LIBRARY_DEFAULT_NA = "na/error=code,distance=code,rescale=on"
EXACT_NA = "na/error=exact,distance=code,rescale=off"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(variant: str, seed: int, test_acc: float, train_loss: float = 0.5, seconds: float = 10.0):
    return {
        "variant": variant,
        "seed": seed,
        "test_acc": test_acc,
        "train_loss": train_loss,
        "time_per_epoch_s": seconds,
    }


class FakeRunner:
    """Stand-in for run_variant that counts its calls and returns a record without training."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, variant, seed, settings, data_dir, progress_bar=False):
        self.calls.append((variant, seed))
        accuracy = 0.9 + 0.01 * variants.VARIANT_NAMES.index(variant) + 0.001 * seed
        record = make_run(variant, seed, accuracy, train_loss=0.1 * seed, seconds=2.0)
        record.update(settings=settings.run_key(), device="fake", torch_version="fake")
        return record


@pytest.fixture
def fake_runner(monkeypatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(variants, "run_variant", runner)
    return runner


def test_variant_grid_names():
    names = [variant.name for variant in variant_grid()]

    assert len(names) == 9
    assert len(set(names)) == 9
    assert names[0] == DEFAULT_NA
    assert names[-1] == "stbp"
    assert "na/error=exact,distance=paper,rescale=on" in names


def test_variant_model_options():
    grid = {variant.name: variant for variant in variant_grid()}

    assert grid["stbp"].model_options() == {"grad": "stbp"}
    assert grid["na/error=exact,distance=paper,rescale=on"].model_options() == {
        "grad": "na",
        "error": "exact",
        "distance": "paper",
        "rescale": True,
    }


def test_summarize_hand_computed():
    runs = [
        make_run("stbp", 1, 0.96, train_loss=0.4, seconds=5.0),
        make_run(DEFAULT_NA, 2, 0.99, train_loss=0.2, seconds=12.0),
        make_run(DEFAULT_NA, 0, 0.97, train_loss=0.4, seconds=10.0),
        make_run("stbp", 0, 0.95, train_loss=0.6, seconds=3.0),
        make_run(DEFAULT_NA, 1, 0.98, train_loss=0.3, seconds=11.0),
    ]

    rows = summarize(runs)

    assert [row["variant"] for row in rows] == [DEFAULT_NA, "stbp"]
    na_row, stbp_row = rows
    assert na_row["seeds"] == [0, 1, 2]
    assert na_row["test_acc"] == [0.97, 0.98, 0.99]
    assert na_row["test_acc_mean"] == pytest.approx(0.98)
    # Sample standard deviation: sqrt((0.01**2 + 0 + 0.01**2) / 2) = 0.01.
    assert na_row["test_acc_std"] == pytest.approx(0.01)
    assert na_row["train_loss_mean"] == pytest.approx(0.3)
    assert na_row["time_per_epoch_s_mean"] == pytest.approx(11.0)
    assert stbp_row["seeds"] == [0, 1]
    assert stbp_row["test_acc_mean"] == pytest.approx(0.955)
    # sqrt((0.005**2 + 0.005**2) / 1) = 0.005 * sqrt(2).
    assert stbp_row["test_acc_std"] == pytest.approx(0.005 * math.sqrt(2))
    assert stbp_row["time_per_epoch_s_mean"] == pytest.approx(4.0)


def test_summarize_single_seed_no_std():
    rows = summarize([make_run("stbp", 0, 0.5)])

    assert rows[0]["test_acc_std"] is None
    assert rows[0]["test_acc_mean"] == 0.5


def test_summarize_rejects_duplicate_seed():
    with pytest.raises(ValueError, match="more than one run"):
        summarize([make_run("stbp", 0, 0.5), make_run("stbp", 0, 0.6)])


def test_summarize_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'na/fast'"):
        summarize([make_run("na/fast", 0, 0.5)])


def test_compare_options_error_difference():
    # exact minus code: +0.5 points with distance=code, -0.1 points with distance=paper.
    runs = [
        make_run(DEFAULT_NA, 0, 0.980),
        make_run(EXACT_NA, 0, 0.985),
        make_run("na/error=code,distance=paper,rescale=off", 0, 0.970),
        make_run("na/error=exact,distance=paper,rescale=off", 0, 0.969),
        make_run("stbp", 0, 0.975),
        make_run(LIBRARY_DEFAULT_NA, 0, 0.978),
    ]

    comparisons = {comparison["option"]: comparison for comparison in compare_options(summarize(runs))}

    error = comparisons["error"]
    assert error["differences"] == pytest.approx([0.5, -0.1])
    assert error["pairs"] == ["distance=code,rescale=off", "distance=paper,rescale=off"]
    assert error["mean_difference"] == pytest.approx(0.2)
    assert "mean difference +0.20 points" in error["statement"]
    assert comparisons["distance"]["differences"] == pytest.approx([-1.0, -1.6])
    assert comparisons["rescale"]["differences"] == pytest.approx([-0.2])
    # NA with the library defaults (rescale on) minus STBP.
    assert comparisons["grad"]["mean_difference"] == pytest.approx(0.3)
    assert LIBRARY_DEFAULT_NA in comparisons["grad"]["statement"]


def test_library_default_variant_matches_classifier():
    variant = library_default_variant()

    assert variant.name == LIBRARY_DEFAULT_NA
    assert variant.model_options() == {"grad": "na", "error": "code", "distance": "code", "rescale": True}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": ("na/fast",)}, "unknown variant 'na/fast'; expected one of na/error=code,distance=code,rescale=off, "),
        ({"variants": ()}, "variants is empty"),
        ({"variants": ("stbp", "stbp")}, "stbp more than once"),
        ({"seeds": ()}, "seeds is empty.*--seeds 0 1 2"),
        ({"seeds": (0, 0)}, r"seeds lists \[0\] more than once"),
        ({"epochs": 0}, "epochs=0 must be an integer >= 1. Pass --epochs 1 or more"),
        ({"train_batches": 0}, "train_batches=0 must be an integer >= 1"),
        ({"test_subset": 20_000}, "test_subset=20000 must be an integer between 1 and 10000"),
        ({"lr": 0.0}, "lr=0.0 must be positive"),
        ({"lr_gamma": 1.5}, r"lr_gamma=1.5 must be in \(0, 1\]"),
        ({"kernel": "fast"}, "kernel='fast' is not supported"),
        ({"threads": 0}, "threads=0 must be an integer >= 1"),
    ],
)
def test_settings_reject_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        VariantStudySettings(**changes)


def test_settings_run_key_excludes_variants_and_seeds():
    key = VariantStudySettings(seeds=[3], epochs=2).run_key()

    assert "variants" not in key
    assert "seeds" not in key
    assert key["epochs"] == 2
    assert key["train_batches"] == 200
    assert key["lr"] == 2e-3


def test_study_resumes_finished_runs(tmp_path, fake_runner):
    settings = VariantStudySettings(variants=("stbp", DEFAULT_NA), seeds=(0,), epochs=1, train_batches=2)

    first = run_study(settings, "unused", tmp_path)
    assert fake_runner.calls == [("stbp", 0), (DEFAULT_NA, 0)]
    assert len(read_runs(tmp_path / variants.RUNS_FILE)) == 2

    second = run_study(settings, "unused", tmp_path)
    assert len(fake_runner.calls) == 2
    assert second["rows"] == first["rows"]
    assert second["finished"] == 2


def test_study_reruns_changed_settings(tmp_path, fake_runner):
    settings = VariantStudySettings(variants=("stbp", DEFAULT_NA), seeds=(0,), epochs=1, train_batches=2)
    run_study(settings, "unused", tmp_path)

    changed = VariantStudySettings(variants=("stbp", DEFAULT_NA), seeds=(0,), epochs=2, train_batches=2)
    result = run_study(changed, "unused", tmp_path)

    assert len(fake_runner.calls) == 4
    assert [run["settings"]["epochs"] for run in result["runs"]] == [2, 2]
    assert len(read_runs(tmp_path / variants.RUNS_FILE)) == 4


def test_study_runs_only_missing_seed(tmp_path, fake_runner):
    run_study(VariantStudySettings(variants=("stbp",), seeds=(0,)), "unused", tmp_path)

    result = run_study(VariantStudySettings(variants=("stbp",), seeds=(0, 1)), "unused", tmp_path)

    assert fake_runner.calls == [("stbp", 0), ("stbp", 1)]
    assert result["rows"][0]["seeds"] == [0, 1]


def test_study_fresh_reruns_everything(tmp_path, fake_runner):
    settings = VariantStudySettings(variants=("stbp",), seeds=(0, 1))
    run_study(settings, "unused", tmp_path)

    run_study(settings, "unused", tmp_path, fresh=True)

    assert fake_runner.calls == [("stbp", 0), ("stbp", 1)] * 2


def test_study_skips_truncated_line(tmp_path, fake_runner):
    settings = VariantStudySettings(variants=("stbp", DEFAULT_NA), seeds=(0,))
    run_study(settings, "unused", tmp_path)
    runs_path = tmp_path / variants.RUNS_FILE
    lines = runs_path.read_text().splitlines()
    # A run killed while writing leaves a line without its end.
    runs_path.write_text(lines[0] + "\n" + lines[1][:40])

    run_study(settings, "unused", tmp_path)

    assert fake_runner.calls[2:] == [(DEFAULT_NA, 0)]
    stored = read_runs(runs_path)
    assert [run["variant"] for run in stored] == ["stbp", DEFAULT_NA]


def test_append_run_writes_one_line(tmp_path):
    path = tmp_path / "runs.jsonl"

    append_run(path, {"variant": "stbp", "seed": 0, "settings": {}})
    append_run(path, {"variant": "stbp", "seed": 1, "settings": {}})

    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["seed"] == 1


def test_study_writes_reports(tmp_path, fake_runner):
    settings = VariantStudySettings(variants=(DEFAULT_NA, EXACT_NA, "stbp"), seeds=(0, 1))

    run_study(settings, "unused", tmp_path)

    table = (tmp_path / variants.TABLE_FILE).read_text()
    result = json.loads((tmp_path / variants.RESULT_FILE).read_text())
    assert (tmp_path / variants.FIGURE_FILE).read_bytes().startswith(PNG_SIGNATURE)
    # The fake accuracy grows with the grid position, so stbp (last) ranks first.
    assert [row["variant"] for row in result["rows"]] == ["stbp", EXACT_NA, DEFAULT_NA]
    assert table.index("| stbp |") < table.index(f"| {EXACT_NA} |") < table.index(f"| {DEFAULT_NA} |")
    assert "error exact vs code: mean difference +4.00 points" in table
    assert "--variants" in table
    assert result["finished"] == result["planned"] == 6


def test_main_prints_table(tmp_path, fake_runner, capsys):
    status = variants.main(
        ["--data-dir", "unused", "--out", str(tmp_path), "--seeds", "0", "--variants", "stbp", DEFAULT_NA]
    )

    output = capsys.readouterr().out
    assert status == 0
    assert output.startswith("| variant | test accuracy (%)")
    assert "| stbp | 98.00 | 98.00 (seed 0) |" in output
    assert fake_runner.calls == [("stbp", 0), (DEFAULT_NA, 0)]


def test_main_rejects_unknown_variant(tmp_path, fake_runner, capsys):
    with pytest.raises(SystemExit) as exit_info:
        variants.main(["--data-dir", "unused", "--out", str(tmp_path), "--variants", "na/fast"])

    assert exit_info.value.code == 2
    assert "unknown variant 'na/fast'" in capsys.readouterr().err
    assert fake_runner.calls == []


def test_main_parses_all_batches(tmp_path, fake_runner):
    arguments = ["--data-dir", "unused", "--out", str(tmp_path), "--seeds", "0", "--variants", "stbp"]

    variants.main([*arguments, "--train-batches", "all"])


    result = json.loads((tmp_path / variants.RESULT_FILE).read_text())
    assert result["settings"]["train_batches"] is None


def test_tiny_study_on_real_mnist(tmp_path, mnist_dir):
    # The eager kernel needs no compiling, and a small batch keeps its NA backward fast.
    settings = VariantStudySettings(
        variants=("stbp", "na/error=exact,distance=paper,rescale=on"),
        seeds=(0,),
        epochs=1,
        train_batches=5,
        batch_size=16,
        test_subset=200,
        kernel="eager",
        accelerator="cpu",
        threads=1,
    )
    threads_before = torch.get_num_threads()

    result = run_study(settings, mnist_dir, tmp_path)

    assert result["finished"] == 2
    for run in result["runs"]:
        assert 0 < run["test_acc"] <= 1
        assert run["test_images"] == 200
        assert run["train_images_per_epoch"] == [80]
        assert len(run["epoch_seconds"]) == 1
        assert run["time_per_epoch_s"] > 0
        assert math.isfinite(run["train_loss"])
        assert "1 torch thread)" in run["device"]
    assert torch.get_num_threads() == threads_before
    assert (tmp_path / variants.FIGURE_FILE).read_bytes().startswith(PNG_SIGNATURE)
    assert "| stbp |" in (tmp_path / variants.TABLE_FILE).read_text()
    assert len(json.loads((tmp_path / variants.RESULT_FILE).read_text())["rows"]) == 2


def test_missing_data_names_option(tmp_path, capsys):
    folder = tmp_path / "absent"

    with pytest.raises(SystemExit) as exit_info:
        variants.run_cli(variants.main, ["--data-dir", str(folder), "--out", str(tmp_path), "--variants", "stbp"])

    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert f"error: MNIST folder not found: {folder}." in err
    assert err.rstrip().endswith("as data_dir (--data-dir on the command line).")
    assert not (tmp_path / variants.RESULT_FILE).exists()
