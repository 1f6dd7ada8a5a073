"""Tests of the single-neuron experiment on settings small enough to run in seconds."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest
import torch

from na_lightning.experiments import neighborhood, single_neuron, variants
from na_lightning.experiments.single_neuron import (
    FIGURE_NAME,
    JSON_NAME,
    METHODS,
    TABLE_NAME,
    Method,
    MethodRun,
    SingleNeuronSettings,
    first_iteration,
    main,
    make_problem,
    normalize_inputs,
    run_single_neuron,
    summarize,
    train_method,
)
from na_lightning.functional import lif_neuron, psc_filter

TINY = SingleNeuronSettings(rounds=10, iterations=30, seed=0)
NA_METHODS = [name for name, method in METHODS.items() if method.grad == "na"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_result():
    return run_single_neuron(TINY)


def _recomputed_first(condition: torch.Tensor) -> int | None:
    for index, value in enumerate(condition.tolist()):
        if value:
            return index
    return None


# --------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rounds": 0}, "rounds=0"),
        ({"iterations": -3}, "iterations=-3"),
        ({"lr": -0.1}, "lr=-0.1"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"target_rate": 1.5}, "target_rate=1.5"),
        ({"input_rate": 0.0}, "input_rate=0.0 is invalid; expected a spike probability per step in (0, 1]"),
        ({"tau_s": 0.5}, "tau_s=0.5"),
        ({"normalization": "global"}, "normalization='global'"),
        ({"methods": ("sgd",)}, "'sgd'"),
        ({"methods": ()}, "methods is empty"),
        ({"methods": ("stbp", "stbp")}, "more than once"),
        ({"kernel": "fast"}, "kernel='fast'"),
    ],
)
def test_settings_reject_invalid_value(changes, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")) as caught:
        SingleNeuronSettings(**changes)
    message = str(caught.value)
    assert "expected" in message or "list each method once" in message


def test_settings_error_names_the_fix():
    with pytest.raises(ValueError) as caught:
        SingleNeuronSettings(rounds=0)
    assert "e.g. rounds=500" in str(caught.value)

    with pytest.raises(ValueError) as caught:
        SingleNeuronSettings(lr=-1.0)
    assert "e.g. lr=0.005" in str(caught.value)

    with pytest.raises(ValueError) as caught:
        SingleNeuronSettings(methods=("na",))
    assert "na_code_code" in str(caught.value)


def test_settings_accept_method_list():
    settings = SingleNeuronSettings(methods=["stbp", "na_exact_paper"])
    assert settings.methods == ("stbp", "na_exact_paper")


def test_settings_defaults_are_paper_values():
    settings = SingleNeuronSettings()
    assert (settings.rounds, settings.iterations, settings.time_steps, settings.inputs) == (
        500,
        200,
        30,
        200,
    )
    assert (settings.input_rate, settings.target_rate, settings.lr) == (0.05, 0.2, 0.005)
    assert (settings.tau_m, settings.tau_s, settings.theta) == (5.0, 2.0, 1.0)
    assert settings.methods == (
        "na_code_code",
        "na_code_paper",
        "na_exact_code",
        "na_exact_paper",
        "stbp",
    )


# --------------------------------------------------------------------------------------------
# Problem


def test_normalize_round_zscores_each_round():
    psc = torch.rand(6, 3, 8) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1)
    normalized = normalize_inputs(psc, "round")
    for round_index in range(3):
        values = normalized[:, round_index]
        assert values.mean().item() == pytest.approx(0.0, abs=1e-5)
        assert values.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    per_step_means = normalized.mean(dim=2)
    assert per_step_means.abs().max().item() > 1e-3


def test_normalize_step_zscores_each_step():
    psc = torch.rand(6, 3, 8)
    normalized = normalize_inputs(psc, "step")
    assert torch.allclose(normalized.mean(dim=2), torch.zeros(6, 3), atol=1e-5)
    assert torch.allclose(normalized.std(dim=2, correction=0), torch.ones(6, 3), atol=1e-5)


def test_normalize_constant_step_gives_zero():
    psc = torch.rand(4, 2, 5)
    psc[0] = 0.0
    normalized = normalize_inputs(psc, "step")
    assert torch.equal(normalized[0], torch.zeros(2, 5))
    assert torch.isfinite(normalized).all()


def test_problem_shapes_and_rates():
    settings = SingleNeuronSettings(rounds=40, iterations=1, seed=3)
    problem = make_problem(settings)
    assert problem.inputs.shape == (30, 40, 200)
    assert problem.target_spikes.shape == (30, 40)
    assert problem.target_psc.shape == (30, 40)
    assert problem.initial_weights.shape == (40, 200)

    assert set(problem.target_spikes.unique().tolist()) <= {0.0, 1.0}
    assert problem.target_spikes.mean().item() == pytest.approx(0.2, abs=0.03)
    assert problem.initial_weights.std().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(problem.target_psc, psc_filter(problem.target_spikes, 2.0))


def test_problem_is_seeded():
    first = make_problem(SingleNeuronSettings(rounds=3, seed=5))
    again = make_problem(SingleNeuronSettings(rounds=3, seed=5))
    other = make_problem(SingleNeuronSettings(rounds=3, seed=6))
    assert torch.equal(first.inputs, again.inputs)
    assert torch.equal(first.initial_weights, again.initial_weights)
    assert not torch.equal(first.initial_weights, other.initial_weights)


# --------------------------------------------------------------------------------------------
# Training


def test_loss_is_psc_squared_error():
    settings = SingleNeuronSettings(rounds=4, iterations=1, seed=1)
    problem = make_problem(settings)
    run = train_method(problem, METHODS["na_code_code"], settings)

    current = torch.einsum("tri,ri->tr", problem.inputs, problem.initial_weights)
    psc = lif_neuron(current, grad="na", kernel="eager").psc
    expected = ((psc - problem.target_psc) ** 2).sum(dim=0)
    assert torch.allclose(run.losses[0], expected, atol=1e-6)
    assert (run.losses[0] > 0).all()


def test_round_on_target_has_zero_loss():
    settings = SingleNeuronSettings(rounds=3, iterations=5, seed=2)
    problem = make_problem(settings)
    current = torch.einsum("tri,ri->tr", problem.inputs, problem.initial_weights)
    own_spikes = (lif_neuron(current, kernel="eager").potential > settings.theta).float()

    # Round 0 gets its own initial output as the target; rounds 1 and 2 keep random targets.
    target_spikes = problem.target_spikes.clone()
    target_spikes[:, 0] = own_spikes[:, 0]
    assert not torch.equal(target_spikes[:, 1:], own_spikes[:, 1:])
    problem = dataclasses.replace(
        problem, target_spikes=target_spikes, target_psc=psc_filter(target_spikes, settings.tau_s)
    )

    for name in ("na_code_code", "stbp"):
        run = train_method(problem, METHODS[name], settings)
        assert torch.equal(run.losses[:, 0], torch.zeros(6)), name
        assert run.matched[:, 0].all(), name
        assert (run.losses[0, 1:] > 0).all(), name
        assert not run.matched[0, 1:].any(), name


def test_rounds_train_independently():
    settings = SingleNeuronSettings(rounds=4, iterations=10, seed=4)
    problem = make_problem(settings)
    alone = dataclasses.replace(
        problem,
        inputs=problem.inputs[:, 2:3],
        target_spikes=problem.target_spikes[:, 2:3],
        target_psc=problem.target_psc[:, 2:3],
        initial_weights=problem.initial_weights[2:3],
    )
    together = train_method(problem, METHODS["na_exact_paper"], settings)
    single = train_method(alone, METHODS["na_exact_paper"], settings)
    assert torch.allclose(together.losses[:, 2], single.losses[:, 0], atol=1e-5)


def test_methods_share_initial_problem(tiny_result):
    first_rows = [run.losses[0] for run in tiny_result.runs.values()]
    for row in first_rows[1:]:
        assert torch.equal(row, first_rows[0])


def test_last_row_follows_last_update():
    settings = SingleNeuronSettings(rounds=4, iterations=1, methods=("na_exact_paper",))

    result = run_single_neuron(settings)
    losses = result.losses["na_exact_paper"]

    # Row 0: initial weights; row 1: after the single update, which changes the loss.
    assert losses.shape == (2, 4)
    assert not torch.equal(losses[1], losses[0])
    assert result.summaries["na_exact_paper"].final_mean_loss == pytest.approx(losses[1].mean().item())


def test_curves_have_iteration_round_shape(tiny_result):
    assert list(tiny_result.runs) == list(TINY.methods)
    for name, losses in tiny_result.losses.items():
        assert losses.shape == (31, 10), name
        assert torch.isfinite(losses).all(), name
        assert (losses >= 0).all(), name


@pytest.mark.parametrize("name", NA_METHODS)
def test_na_loss_decreases(tiny_result, name):
    mean = tiny_result.losses[name].mean(dim=1)
    assert mean[-1] < 0.6 * mean[0]
    assert mean[-5:].max() < mean[:5].min()


@pytest.mark.parametrize("name", ["na_exact_paper", "na_code_paper"])
def test_na_paper_distance_beats_stbp(tiny_result, name):
    # Measured on seeds 0-2 at 10 rounds x 30 iterations: the NA variants with
    # distance="paper" (clamped 1/d) end below STBP. Those with distance="code" (clamped
    # d**-3) end above STBP, also at 50 rounds x 200 iterations, so they are not compared.
    final = tiny_result.summaries[name].final_mean_loss
    assert final < tiny_result.summaries["stbp"].final_mean_loss


def test_matched_equals_zero_loss(tiny_result):
    for name, run in tiny_result.runs.items():
        assert torch.equal(run.matched, run.losses == 0), name


def test_summary_agrees_with_curves(tiny_result):
    for name, run in tiny_result.runs.items():
        summary = tiny_result.summaries[name]
        mean = run.losses.mean(dim=1)
        assert summary.initial_mean_loss == pytest.approx(mean[0].item())
        assert summary.final_mean_loss == pytest.approx(mean[-1].item())
        assert summary.first_zero_iteration == _recomputed_first(mean == 0)
        assert summary.first_one_percent_iteration == _recomputed_first(mean <= 0.01 * mean[0])
        assert summary.matched_share_final == pytest.approx((run.losses[-1] == 0).float().mean().item())
        assert summary.matched_share_any == pytest.approx(
            (run.losses == 0).any(dim=0).float().mean().item()
        )


def test_summary_first_zero_when_converged():
    # At T = 5 with 4 rounds, NA (exact, paper) brings every round to its target.
    settings = SingleNeuronSettings(rounds=4, iterations=30, time_steps=5, seed=0, methods=("na_exact_paper",))
    result = run_single_neuron(settings)
    run = result.runs["na_exact_paper"]
    summary = result.summaries["na_exact_paper"]
    mean = run.losses.mean(dim=1)

    assert summary.first_zero_iteration is not None
    assert summary.first_zero_iteration == _recomputed_first(mean == 0)
    assert mean[summary.first_zero_iteration - 1] > 0
    assert summary.first_one_percent_iteration <= summary.first_zero_iteration
    assert summary.matched_share_final == 1.0
    assert summary.final_mean_loss == 0.0


def test_summarize_hand_made_run():
    losses = torch.tensor(
        [
            [4.0, 2.0, 0.0],
            [2.0, 1.0, 0.0],
            [0.0, 0.03, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.25],
        ]
    )
    run = MethodRun(losses=losses, matched=losses == 0, seconds=1.5)
    summary = summarize(Method("na_code_code", "na"), run)
    assert summary.initial_mean_loss == pytest.approx(2.0)
    assert summary.first_one_percent_iteration == 2
    assert summary.first_zero_iteration == 3
    assert summary.final_mean_loss == pytest.approx(0.25 / 3)
    assert summary.matched_share_final == pytest.approx(2 / 3)
    assert summary.matched_share_any == 1.0
    assert summary.seconds == 1.5
    assert summary.label == "NA (error=code, distance=code)"


def test_first_iteration_none_without_hit():
    assert first_iteration(torch.tensor([False, False])) is None
    assert first_iteration(torch.tensor([False, True, True])) == 1


# --------------------------------------------------------------------------------------------
# Command line


def test_command_writes_three_files(tmp_path, capsys):
    out = tmp_path / "report"
    result = main(
        [
            "--out", str(out),
            "--rounds", "3",
            "--iterations", "4",
            "--seed", "7",
            "--target-rate", "0.25",
            "--methods", "na_code_code,stbp",
        ]
    )
    assert sorted(path.name for path in out.iterdir()) == sorted([FIGURE_NAME, TABLE_NAME, JSON_NAME])

    png = (out / FIGURE_NAME).read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000

    numbers = json.loads((out / JSON_NAME).read_text())
    assert numbers["settings"]["rounds"] == 3
    assert numbers["settings"]["seed"] == 7
    assert numbers["settings"]["target_rate"] == 0.25
    assert list(numbers["summaries"]) == ["na_code_code", "stbp"]
    stbp = result.summaries["stbp"]
    assert numbers["summaries"]["stbp"]["final_mean_loss"] == pytest.approx(stbp.final_mean_loss)
    assert len(numbers["loss_curves"]["stbp"]["mean"]) == 5

    table = (out / TABLE_NAME).read_text()
    assert "| NA (error=code, distance=code) |" in table
    assert "| STBP (sigmoid surrogate, BPTT) |" in table
    assert "seed=7" in table
    assert "target_rate=0.25" in table
    assert table in capsys.readouterr().out


def test_command_rejects_bad_settings(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--out", str(tmp_path), "--rounds", "0"])
    assert caught.value.code == 2
    assert "--rounds 0 is invalid" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--methods", "na,stbp"])
    assert "method 'na' is unknown" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("module", ["single_neuron", "neighborhood", "variants"])
def test_out_file_rejected_before_run(module, tmp_path, capsys):
    experiment = importlib.import_module(f"na_lightning.experiments.{module}")
    path = tmp_path / "afile"
    path.write_text("keep")
    arguments = ["--out", str(path)]
    if module != "single_neuron":
        arguments += ["--data-dir", str(tmp_path)]

    with pytest.raises(SystemExit) as exit_info:
        experiment.main(arguments)

    assert exit_info.value.code == 2
    assert f"{path} is a file; expected a folder for the output files" in capsys.readouterr().err
    assert path.read_text() == "keep"


def test_out_default_is_not_published_folder():
    for experiment in (single_neuron, neighborhood, variants):
        parser = experiment.build_parser()
        out = parser.parse_args(["--data-dir", "unused"] if experiment is variants else []).out
        assert out.as_posix() == "runs/reproduction"


def test_settings_error_names_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--rounds", "0"])

    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "error: --rounds 0 is invalid; expected an integer >= 1." in err
    assert "e.g. --rounds 500." in err
    assert "rounds=" not in err
