r"""The single-neuron experiment: one LIF neuron learns a random target spike train.

This re-measures Figure 6b of Yang, Zhang and Li, "Backpropagated Neighborhood Aggregation for
Accurate Training of Spiking Neural Networks" (ICML 2021, section 4.2). In every round, 200
inputs fire Bernoulli(0.05) spike trains over T = 30 steps. Their PSCs (synaptic filter,
``tau_s = 2``) are z-scored and weighted by ``w ~ N(0, 1) * 0.1`` into the current of one LIF
neuron (``tau_m = 5``, ``theta = 1``, hard reset). The neuron learns a Bernoulli(0.2) target
spike train by plain SGD on ``w`` (lr 0.005, 200 iterations) on the loss

.. math:: L = \sum_t \bigl(a_\text{out}[t] - a_\text{target}[t]\bigr)^2,

where ``a_target`` is the target train through the same synaptic filter. The paper ran 500
independent rounds and reports that NA brought every round to its target within 65
iterations and STBP within 147.

All rounds run at once: the current is one ``[T, rounds]`` tensor, and the loss is summed over
the rounds, so each round's weights receive their own gradient. Every method starts from the
same inputs, targets and initial weights.

Command line::

    python -m na_lightning.experiments.single_neuron --out docs/reproduction

writes ``single_neuron_loss.png``, ``single_neuron.md`` and ``single_neuron.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from na_lightning.cli_errors import run_cli
from na_lightning.experiments._arguments import DEFAULT_OUTPUT, command_line_message, output_folder
from na_lightning.functional.lif import psc_filter
from na_lightning.functional.neuron import KERNELS, lif_neuron

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PROG = "python -m na_lightning.experiments.single_neuron"

NORMALIZATIONS = ("round", "step")
"""Input z-scoring: over all ``T x inputs`` PSCs of a round, or per time step across inputs."""

FIGURE_NAME = "single_neuron_loss.png"
TABLE_NAME = "single_neuron.md"
JSON_NAME = "single_neuron.json"

SYMLOG_LINEAR_THRESHOLD = 1e-3
"""Loss below which the plot's y axis is linear, so that a loss of exactly 0 is drawn.

A round whose spikes differ from the target in one step already has a loss of at least 0.25
(``(1 / tau_s)^2`` for ``tau_s = 2``), so a mean over up to 250 rounds stays above this value
until it is exactly 0.
"""

PAPER_CONVERGENCE = {"NA": 65, "STBP": 147}
"""Iteration by which every round reached its target in the paper's Figure 6b."""


@dataclass(frozen=True)
class Method:
    """A training method: the gradient of the LIF neuron and its NA options.

    Attributes:
        name: the name on the command line and in the outputs.
        grad: ``"na"`` or ``"stbp"``, as in :func:`~na_lightning.functional.lif_psc`.
        error: NA error vector, ``"code"`` or ``"exact"`` (unused by STBP).
        distance: NA distance weights, ``"code"`` or ``"paper"`` (unused by STBP).
    """

    name: str
    grad: str
    error: str = "code"
    distance: str = "code"

    @property
    def label(self) -> str:
        """Readable name with the gradient variant, for the plot legend and the table."""
        if self.grad == "stbp":
            return "STBP (sigmoid surrogate, BPTT)"
        return f"NA (error={self.error}, distance={self.distance})"


METHODS = {
    method.name: method
    for method in (
        Method("na_code_code", "na", "code", "code"),
        Method("na_code_paper", "na", "code", "paper"),
        Method("na_exact_code", "na", "exact", "code"),
        Method("na_exact_paper", "na", "exact", "paper"),
        Method("stbp", "stbp"),
    )
}
"""All methods by name. NA methods are named ``na_<error>_<distance>``."""


@dataclass(frozen=True)
class SingleNeuronSettings:
    """Settings of the single-neuron experiment; the defaults are the paper's.

    Attributes:
        rounds: independent training runs, each with its own inputs, target and weights.
        iterations: SGD updates per round.
        time_steps: simulation length ``T`` in steps.
        inputs: input spike trains per round.
        input_rate: probability of an input spike per step.
        target_rate: probability of a target spike per step. The paper's table gives 0.2;
            the authors' notebook used 0.25.
        weight_scale: standard deviation of the initial weights.
        lr: SGD learning rate.
        tau_m: membrane time constant in steps.
        tau_s: synaptic time constant in steps, for the inputs, the output and the target.
        theta: firing threshold.
        normalization: ``"round"`` z-scores the input PSCs with the mean and standard
            deviation of all ``T x inputs`` PSCs of a round, which is how the paper's text
            describes it (the default, because this experiment re-measures the paper's
            figure). ``"step"`` z-scores each time step across the inputs. On the paper's
            settings with seed 0 the two differ by at most 1.2 percentage points of
            rounds on target.
        surrogate_slope: sigmoid steepness of the STBP surrogate, per unit of potential.
        methods: names from :data:`METHODS`, in the order of the outputs.
        seed: seed of the inputs, targets and initial weights.
        kernel: NA backward implementation, ``"eager"``, ``"compiled"`` or ``"auto"``. The
            default ``"eager"`` skips compilation, which costs more than it saves on
            ``[T, rounds]`` tensors of this size.
    """

    rounds: int = 500
    iterations: int = 200
    time_steps: int = 30
    inputs: int = 200
    input_rate: float = 0.05
    target_rate: float = 0.2
    weight_scale: float = 0.1
    lr: float = 0.005
    tau_m: float = 5.0
    tau_s: float = 2.0
    theta: float = 1.0
    normalization: str = "round"
    surrogate_slope: float = 4.0
    methods: tuple[str, ...] = tuple(METHODS)
    seed: int = 0
    kernel: str = "eager"

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        validate_settings(self)


def validate_settings(settings: SingleNeuronSettings) -> None:
    """Raise ValueError naming the first invalid setting, what was expected and the fix."""
    for name in ("rounds", "iterations", "time_steps", "inputs"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{name}={value!r} is invalid; expected an integer >= 1. Pass a positive count, "
                f"e.g. {name}={getattr(SingleNeuronSettings, name)}."
            )

    # Without input spikes the neuron never fires and no method can learn, so input_rate > 0.
    if not (_is_real(settings.input_rate) and 0.0 < settings.input_rate <= 1.0):
        raise ValueError(
            f"input_rate={settings.input_rate!r} is invalid; expected a spike probability per step "
            f"in (0, 1], e.g. input_rate={SingleNeuronSettings.input_rate}."
        )
    if not (_is_real(settings.target_rate) and 0.0 <= settings.target_rate <= 1.0):
        raise ValueError(
            f"target_rate={settings.target_rate!r} is invalid; expected a spike probability per "
            f"step in [0, 1], e.g. target_rate={SingleNeuronSettings.target_rate}."
        )

    if not (_is_real(settings.weight_scale) and settings.weight_scale >= 0.0):
        raise ValueError(
            f"weight_scale={settings.weight_scale!r} is invalid; expected a finite standard "
            "deviation >= 0, e.g. weight_scale=0.1."
        )
    if not (_is_real(settings.lr) and settings.lr > 0.0):
        raise ValueError(
            f"lr={settings.lr!r} is invalid; expected a finite learning rate > 0, e.g. lr=0.005."
        )

    _validate_neuron(settings)

    if settings.normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization={settings.normalization!r} is not supported; expected one of "
            f"{NORMALIZATIONS}."
        )
    if settings.kernel not in KERNELS:
        raise ValueError(f"kernel={settings.kernel!r} is not supported; expected one of {KERNELS}.")
    if isinstance(settings.seed, bool) or not isinstance(settings.seed, int):
        raise ValueError(f"seed={settings.seed!r} is invalid; expected an integer, e.g. seed=0.")

    _validate_methods(settings.methods)


def _validate_neuron(settings: SingleNeuronSettings) -> None:
    for name in ("tau_m", "tau_s"):
        value = getattr(settings, name)
        if not (_is_real(value) and value >= 1.0):
            raise ValueError(
                f"{name}={value!r} is invalid; expected a time constant >= 1 step, "
                f"e.g. {name}={getattr(SingleNeuronSettings, name)}."
            )
    if not (_is_real(settings.theta) and settings.theta > 0.0):
        raise ValueError(f"theta={settings.theta!r} is invalid; expected a threshold > 0, e.g. theta=1.0.")
    if not (_is_real(settings.surrogate_slope) and settings.surrogate_slope > 0.0):
        raise ValueError(
            f"surrogate_slope={settings.surrogate_slope!r} is invalid; expected a slope > 0, "
            "e.g. surrogate_slope=4.0."
        )


def _validate_methods(methods: tuple[str, ...]) -> None:
    if not methods:
        raise ValueError(f"methods is empty; expected one or more of {', '.join(METHODS)}.")
    for name in methods:
        if name not in METHODS:
            raise ValueError(
                f"method {name!r} is unknown; expected one or more of {', '.join(METHODS)}."
            )
    duplicates = sorted({name for name in methods if methods.count(name) > 1})
    if duplicates:
        raise ValueError(f"methods lists {duplicates} more than once; list each method once.")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# The experiment


@dataclass(frozen=True)
class SingleNeuronProblem:
    """The random inputs, targets and initial weights of all rounds.

    Attributes:
        inputs: z-scored input PSCs, shape ``[T, rounds, inputs]``.
        target_spikes: target spike trains, 0.0 or 1.0, shape ``[T, rounds]``.
        target_psc: the target trains through the synaptic filter, shape ``[T, rounds]``.
        initial_weights: weights before the first update, shape ``[rounds, inputs]``.
    """

    inputs: Tensor
    target_spikes: Tensor
    target_psc: Tensor
    initial_weights: Tensor


@dataclass(frozen=True)
class MethodRun:
    """The training record of one method.

    Attributes:
        losses: loss of every round at every iteration, shape ``[iterations + 1, rounds]``.
            Row ``i`` is the loss of the weights after ``i`` SGD updates, so row 0 is the
            loss of the initial weights.
        matched: whether the output spike train equals the target at every step, same
            shape and rows as ``losses``. It is true exactly where the loss is 0.
        seconds: wall time of the training in seconds.
    """

    losses: Tensor
    matched: Tensor
    seconds: float


@dataclass(frozen=True)
class MethodSummary:
    """The numbers of one method in the report.

    Attributes:
        method: the method's name in :data:`METHODS`.
        label: the method and its gradient variant, for people.
        initial_mean_loss: mean loss over rounds at iteration 0.
        final_mean_loss: mean loss over rounds at the last iteration.
        first_zero_iteration: first iteration whose mean loss is 0, so every round matches
            its target, or None if none within the budget.
        first_one_percent_iteration: first iteration whose mean loss is at most 1 % of the
            initial mean loss, or None.
        matched_share_final: share of rounds whose output equals the target at the last
            iteration.
        matched_share_any: share of rounds whose output equals the target at any iteration.
        seconds: wall time of the training in seconds.
    """

    method: str
    label: str
    initial_mean_loss: float
    final_mean_loss: float
    first_zero_iteration: int | None
    first_one_percent_iteration: int | None
    matched_share_final: float
    matched_share_any: float
    seconds: float


@dataclass(frozen=True)
class SingleNeuronResult:
    """Loss curves and summary numbers of every method.

    Attributes:
        settings: the settings of the run.
        runs: the training record of each method, by name, in the order of
            ``settings.methods``.
        summaries: the summary numbers of each method, by name.
        environment: torch version, CPU threads and Python version of the run.
    """

    settings: SingleNeuronSettings
    runs: dict[str, MethodRun]
    summaries: dict[str, MethodSummary]
    environment: dict[str, str | int] = field(default_factory=dict)

    @property
    def losses(self) -> dict[str, Tensor]:
        """Loss curves by method, each of shape ``[iterations + 1, rounds]``."""
        return {name: run.losses for name, run in self.runs.items()}

    def to_dict(self) -> dict:
        """Return settings, summaries and mean/std loss curves as JSON-ready values."""
        curves = {}
        for name, run in self.runs.items():
            curves[name] = {
                "mean": run.losses.mean(dim=1).tolist(),
                "std": run.losses.std(dim=1, correction=0).tolist(),
            }
        return {
            "experiment": "single_neuron",
            "settings": asdict(self.settings),
            "environment": self.environment,
            "iteration_meaning": "iteration i is the loss after i SGD updates; 0 is the initial weights",
            "summaries": {name: asdict(summary) for name, summary in self.summaries.items()},
            "loss_curves": curves,
        }


def normalize_inputs(psc: Tensor, normalization: str = "round") -> Tensor:
    """Z-score input PSCs per round or per time step.

    Args:
        psc: input PSCs, shape ``[T, rounds, inputs]``.
        normalization: ``"round"`` (statistics over ``T`` and inputs) or ``"step"``
            (statistics over inputs, per time step). The standard deviation is the
            population one.

    Returns:
        The z-scored PSCs, same shape. Where all PSCs of a group are equal, the result is 0.
    """
    dims = (0, 2) if normalization == "round" else (2,)
    mean = psc.mean(dim=dims, keepdim=True)
    std = psc.std(dim=dims, keepdim=True, correction=0)
    return (psc - mean) / torch.where(std > 0, std, torch.ones_like(std))


def make_problem(settings: SingleNeuronSettings) -> SingleNeuronProblem:
    """Draw the inputs, targets and initial weights of all rounds from ``settings.seed``."""
    generator = torch.Generator().manual_seed(settings.seed)
    steps, rounds, inputs = settings.time_steps, settings.rounds, settings.inputs

    input_spikes = torch.bernoulli(
        torch.full((steps, rounds, inputs), float(settings.input_rate)), generator=generator
    )
    target_spikes = torch.bernoulli(
        torch.full((steps, rounds), float(settings.target_rate)), generator=generator
    )
    weights = torch.randn((rounds, inputs), generator=generator) * settings.weight_scale

    input_psc = psc_filter(input_spikes, settings.tau_s)
    return SingleNeuronProblem(
        inputs=normalize_inputs(input_psc, settings.normalization),
        target_spikes=target_spikes,
        target_psc=psc_filter(target_spikes, settings.tau_s),
        initial_weights=weights,
    )


def train_method(
    problem: SingleNeuronProblem, method: Method, settings: SingleNeuronSettings
) -> MethodRun:
    """Train the weights of all rounds with one method and record the loss of every iteration.

    Args:
        problem: inputs, targets and initial weights (left unchanged).
        method: the gradient to train with.
        settings: neuron constants, learning rate, iterations and kernel.

    Returns:
        The losses and target matches, shape ``[iterations + 1, rounds]`` each.
    """
    iterations = settings.iterations
    rounds = problem.initial_weights.shape[0]
    weights = problem.initial_weights.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([weights], lr=settings.lr)
    # Row i is the loss after i updates, so the last row shows the effect of the last update.
    losses = torch.empty(iterations + 1, rounds)
    matched = torch.empty(iterations + 1, rounds, dtype=torch.bool)
    target_fired = problem.target_spikes > 0
    log_every = max(1, iterations // 10)

    start = time.perf_counter()
    for iteration in range(iterations + 1):
        current = torch.einsum("tri,ri->tr", problem.inputs, weights)
        output = lif_neuron(
            current,
            tau_m=settings.tau_m,
            tau_s=settings.tau_s,
            theta=settings.theta,
            grad=method.grad,
            error=method.error,
            distance=method.distance,
            surrogate_slope=settings.surrogate_slope,
            kernel=settings.kernel,
        )
        round_losses = (output.psc - problem.target_psc).pow(2).sum(dim=0)
        losses[iteration] = round_losses.detach()
        matched[iteration] = ((output.potential > settings.theta) == target_fired).all(dim=0)
        if iteration == iterations:
            break

        optimizer.zero_grad(set_to_none=True)
        round_losses.sum().backward()
        optimizer.step()

        if iteration % log_every == 0 and iteration > 0:
            logger.info(
                "%s: %d/%d updates, mean loss %.4f, %.1f %% of rounds on target",
                method.name,
                iteration,
                iterations,
                losses[iteration].mean().item(),
                100.0 * matched[iteration].float().mean().item(),
            )
    logger.info(
        "%s: %d/%d updates, mean loss %.4f, %.1f %% of rounds on target",
        method.name,
        iterations,
        iterations,
        losses[iterations].mean().item(),
        100.0 * matched[iterations].float().mean().item(),
    )
    return MethodRun(losses=losses, matched=matched, seconds=time.perf_counter() - start)


def first_iteration(condition: Tensor) -> int | None:
    """Return the index of the first true entry of a 1-D boolean tensor, or None."""
    hits = condition.nonzero()
    return int(hits[0, 0]) if len(hits) else None


def summarize(method: Method, run: MethodRun) -> MethodSummary:
    """Compute the report numbers of one method from its loss curves."""
    mean_loss = run.losses.mean(dim=1)
    initial = float(mean_loss[0])
    return MethodSummary(
        method=method.name,
        label=method.label,
        initial_mean_loss=initial,
        final_mean_loss=float(mean_loss[-1]),
        first_zero_iteration=first_iteration(mean_loss == 0),
        first_one_percent_iteration=first_iteration(mean_loss <= 0.01 * initial),
        matched_share_final=float(run.matched[-1].float().mean()),
        matched_share_any=float(run.matched.any(dim=0).float().mean()),
        seconds=run.seconds,
    )


def run_single_neuron(settings: SingleNeuronSettings | None = None) -> SingleNeuronResult:
    """Run the single-neuron experiment for every method in ``settings.methods``.

    Args:
        settings: the experiment's settings; None for the paper's (500 rounds x 200
            iterations x 5 methods: about 80 s wall time measured on 2 shared CPU cores
            with torch 2.14).

    Returns:
        The per-method loss curves ``[iterations + 1, rounds]`` and summary numbers.

    Raises:
        ValueError: an invalid setting (raised when the settings are created).
    """
    settings = SingleNeuronSettings() if settings is None else settings
    validate_settings(settings)
    problem = make_problem(settings)

    runs = {}
    summaries = {}
    for name in settings.methods:
        method = METHODS[name]
        logger.info("Training %s: %s", name, method.label)
        runs[name] = train_method(problem, method, settings)
        summaries[name] = summarize(method, runs[name])

    environment = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    return SingleNeuronResult(settings=settings, runs=runs, summaries=summaries, environment=environment)


# --------------------------------------------------------------------------------------------
# Outputs


def loss_figure(result: SingleNeuronResult) -> Figure:
    """Plot each method's mean loss over rounds +/- one standard deviation per iteration.

    The y axis is symmetric-log: logarithmic above :data:`SYMLOG_LINEAR_THRESHOLD` and linear
    below, so a mean loss of exactly 0 is drawn. The band's lower edge is clipped at 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    iterations = torch.arange(result.settings.iterations + 1).numpy()

    for name, run in result.runs.items():
        mean = run.losses.mean(dim=1)
        std = run.losses.std(dim=1, correction=0)
        (line,) = axes.plot(iterations, mean.numpy(), label=METHODS[name].label, linewidth=1.5)
        axes.fill_between(
            iterations,
            (mean - std).clamp_min(0).numpy(),
            (mean + std).numpy(),
            color=line.get_color(),
            alpha=0.15,
            linewidth=0,
        )

    axes.set_yscale("symlog", linthresh=SYMLOG_LINEAR_THRESHOLD)
    axes.set_ylim(bottom=0)
    axes.set_xlim(0, max(1, result.settings.iterations))
    axes.set_xlabel("iteration (SGD updates so far)")
    axes.set_ylabel(f"loss (symlog axis, linear below {SYMLOG_LINEAR_THRESHOLD:g})")
    axes.set_title(
        f"Single LIF neuron, {result.settings.rounds} rounds: mean +/- std of the loss"
    )
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _iteration_cell(value: int | None, iterations: int) -> str:
    return f"never (within {iterations})" if value is None else str(value)


def markdown_report(result: SingleNeuronResult) -> str:
    """Return the markdown table of the summary numbers with the settings of the run."""
    settings = result.settings
    lines = [
        "# Single-neuron experiment",
        "",
        "| method | first iteration with mean loss 0 | first iteration with mean loss <= 1 % of "
        "start | rounds on target at the end | rounds on target at any iteration | initial "
        "mean loss | final mean loss | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for summary in result.summaries.values():
        lines.append(
            f"| {summary.label} "
            f"| {_iteration_cell(summary.first_zero_iteration, settings.iterations)} "
            f"| {_iteration_cell(summary.first_one_percent_iteration, settings.iterations)} "
            f"| {100 * summary.matched_share_final:.1f} % "
            f"| {100 * summary.matched_share_any:.1f} % "
            f"| {summary.initial_mean_loss:.4f} "
            f"| {summary.final_mean_loss:.4f} "
            f"| {summary.seconds:.1f} |"
        )

    environment = ", ".join(f"{key} {value}" for key, value in result.environment.items())
    lines += [
        "",
        f"Settings: {settings_line(settings)}.",
        "",
        "Iteration i is the loss of the weights after i SGD updates (iteration 0: initial "
        "weights). A round is on target when its output spike train equals the target at every "
        "step, which is exactly when its loss is 0. "
        f"Environment: {environment}.",
        "",
        f"The paper reports every round on target within {PAPER_CONVERGENCE['NA']} iterations "
        f"for NA and within {PAPER_CONVERGENCE['STBP']} for STBP (Yang et al., ICML 2021, "
        "Figure 6b).",
    ]
    return "\n".join(lines) + "\n"


def settings_line(settings: SingleNeuronSettings) -> str:
    """Return the settings as one line of ``name=value`` pairs, in field order."""
    pairs = []
    for item in fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, tuple):
            value = ",".join(value)
        pairs.append(f"{item.name}={value}")
    return ", ".join(pairs)


def write_outputs(result: SingleNeuronResult, out_dir: Path | str) -> list[Path]:
    """Write the loss plot (PNG), the markdown table and the JSON numbers into ``out_dir``.

    Returns:
        The written files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    figure_path = out_dir / FIGURE_NAME
    loss_figure(result).savefig(figure_path)

    table_path = out_dir / TABLE_NAME
    table_path.write_text(markdown_report(result), encoding="utf-8")

    json_path = out_dir / JSON_NAME
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return [figure_path, table_path, json_path]


# --------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the single-neuron experiment."""
    defaults = SingleNeuronSettings()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Train one LIF neuron to emit a random target spike train with NA and STBP, "
            "over many independent rounds, and write the loss curves (PNG), a table "
            "(markdown) and the numbers (JSON)."
        ),
    )
    parser.add_argument(
        "--out", type=output_folder, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )

    parser.add_argument("--rounds", type=int, default=defaults.rounds, help=f"independent rounds (default: {defaults.rounds})")
    parser.add_argument(
        "--iterations", type=int, default=defaults.iterations,
        help=f"SGD updates per round (default: {defaults.iterations})",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of inputs, targets and weights (default: {defaults.seed})")
    parser.add_argument(
        "--target-rate", type=float, default=defaults.target_rate,
        help=f"target spike probability per step (default: {defaults.target_rate}; the authors' notebook used 0.25)",
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"SGD learning rate (default: {defaults.lr})")

    parser.add_argument(
        "--input-rate", type=float, default=defaults.input_rate,
        help=f"input spike probability per step (default: {defaults.input_rate})",
    )
    parser.add_argument("--time-steps", type=int, default=defaults.time_steps, help=f"time steps T (default: {defaults.time_steps})")
    parser.add_argument("--inputs", type=int, default=defaults.inputs, help=f"inputs per round (default: {defaults.inputs})")
    parser.add_argument(
        "--weight-scale", type=float, default=defaults.weight_scale,
        help=f"standard deviation of the initial weights (default: {defaults.weight_scale})",
    )

    parser.add_argument("--tau-m", type=float, default=defaults.tau_m, help=f"membrane time constant in steps (default: {defaults.tau_m})")
    parser.add_argument("--tau-s", type=float, default=defaults.tau_s, help=f"synaptic time constant in steps (default: {defaults.tau_s})")
    parser.add_argument("--theta", type=float, default=defaults.theta, help=f"firing threshold (default: {defaults.theta})")

    parser.add_argument(
        "--normalization", choices=NORMALIZATIONS, default=defaults.normalization,
        help="z-score the input PSCs over all PSCs of a round (round, the paper's text) or per "
        f"time step across inputs (step) (default: {defaults.normalization})",
    )
    parser.add_argument(
        "--surrogate-slope", type=float, default=defaults.surrogate_slope,
        help=f"STBP sigmoid steepness per unit of potential (default: {defaults.surrogate_slope})",
    )
    parser.add_argument(
        "--methods", type=_name_list, default=defaults.methods,
        help=f"comma-separated methods from {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--kernel", choices=KERNELS, default=defaults.kernel,
        help=f"NA backward implementation (default: {defaults.kernel})",
    )
    return parser


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def settings_from_args(args: argparse.Namespace) -> SingleNeuronSettings:
    """Build the settings from parsed command-line arguments."""
    values = {item.name: getattr(args, item.name) for item in fields(SingleNeuronSettings)}
    return SingleNeuronSettings(**values)


def main(argv: Sequence[str] | None = None) -> SingleNeuronResult:
    """Run the experiment with ``argv`` (default ``sys.argv[1:]``), write and print the table.

    Returns:
        The result, for callers that run the command in-process.

    Raises:
        SystemExit: status 2 for invalid arguments or settings (from argparse).
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = settings_from_args(args)
    except ValueError as error:
        parser.error(command_line_message(str(error), parser))

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    logger.info("Single-neuron experiment: %s", settings_line(settings))

    result = run_single_neuron(settings)
    paths = write_outputs(result, args.out)
    sys.stdout.write(markdown_report(result))
    logger.info("Wrote %s", ", ".join(str(path) for path in paths))
    return result


if __name__ == "__main__":
    run_cli(main)
