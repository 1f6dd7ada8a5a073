"""The neighborhood experiment: SNS neighbors, ranks, the training run and its outputs."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from na_lightning.cli_errors import run_cli
from na_lightning.data.mnist import MNISTDataModule
from na_lightning.experiments.neighborhood import (
    NeighborhoodSettings,
    all_train_ranks,
    greedy_squared_distances,
    main,
    neighbor_ranks,
    run_neighborhood,
    sns_neighbor_spikes,
    spike_train_index,
    write_outputs,
)
from na_lightning.functional import LIFParameters, lif_membrane, neighbor_loss_change

TAU_M = 5.0
THETA = 1.0


def potentials_of(currents: list[float]) -> torch.Tensor:
    """Pre-reset potentials ``[T, 1]`` of one neuron (tau_m = 5, theta = 1) in float64."""
    current = torch.tensor(currents, dtype=torch.float64).unsqueeze(1)
    return lif_membrane(current, LIFParameters(TAU_M, 2.0, THETA))


def trains_of(neighbors: torch.Tensor) -> list[list[int]]:
    return neighbors.squeeze(-1).int().tolist()


# --- spike train index ----------------------------------------------------------------------


def test_index_of_paper_examples():
    ten_spikes = torch.ones(10, dtype=torch.bool)
    two_late_spikes = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 0, 1])

    assert spike_train_index(ten_spikes).item() == 1023
    assert spike_train_index(two_late_spikes).item() == 5


def test_index_keeps_trailing_shape():
    spikes = torch.zeros(3, 2, 2, dtype=torch.bool)
    spikes[0, 0, 1] = True
    spikes[2, 1, 0] = True

    index = spike_train_index(spikes)

    assert index.dtype == torch.int64
    assert index.tolist() == [[0, 4], [1, 0]]


# --- SNS neighbors --------------------------------------------------------------------------


def test_lost_spike_chain_adds_later_spike():
    # Currents [1.5, 0.3, 0.1]: u = [1.5, 0.3, 0.8 * 0.3 + 0.1 = 0.34], train [1, 0, 0].
    # p = 0 loses its spike and keeps m = 1, so u'[1] = 0.8 + 0.3 = 1.1 fires, and the
    # reset gives u'[2] = 0.1.
    # p = 1 gains a spike and resets, so u'[2] = 0.1 stays silent.
    potential = potentials_of([1.5, 0.3, 0.1])

    neighbors = sns_neighbor_spikes(potential, tau_m=TAU_M, theta=THETA)

    assert potential.squeeze(1).tolist() == pytest.approx([1.5, 0.3, 0.34])
    assert neighbors.shape == (3, 3, 1)
    assert trains_of(neighbors) == [[0, 1, 0], [1, 1, 0], [1, 0, 1]]


def test_gained_spike_reset_removes_later_spike():
    # Currents [0.9, 0.5, 0.1]: u = [0.9, 0.72 + 0.5 = 1.22, 0.1], train [0, 1, 0].
    # p = 0 gains a spike and resets, so u'[1] = 0.5 stays silent and u'[2] = 0.4 + 0.1 = 0.5.
    # p = 1 loses its spike and keeps m = 1, so u'[2] = 0.8 + 0.1 = 0.9 stays silent.
    potential = potentials_of([0.9, 0.5, 0.1])

    neighbors = sns_neighbor_spikes(potential, tau_m=TAU_M, theta=THETA)

    assert potential.squeeze(1).tolist() == pytest.approx([0.9, 1.22, 0.1])
    assert trains_of(neighbors) == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_neighbor_differs_first_at_own_step():
    generator = torch.Generator().manual_seed(1)
    current = torch.rand(8, 400, generator=generator, dtype=torch.float64) * 1.2
    potential = lif_membrane(current, LIFParameters(TAU_M, 2.0, THETA))
    spikes = potential > THETA

    neighbors = sns_neighbor_spikes(potential, tau_m=TAU_M, theta=THETA)

    for p in range(8):
        assert torch.equal(neighbors[p, :p], spikes[:p]), f"neighbor {p} differs before step {p}"
        assert torch.equal(neighbors[p, p], ~spikes[p]), f"neighbor {p} keeps the firing at step {p}"


def test_neighbors_match_na_loss_change():
    # The NA backward sums (s'[t] - s[t]) h[t] over the same neighbors, so both must agree.
    generator = torch.Generator().manual_seed(2)
    current = torch.rand(6, 300, generator=generator, dtype=torch.float64) * 1.3
    potential = lif_membrane(current, LIFParameters(TAU_M, 2.0, THETA))
    error = torch.randn(6, 300, generator=generator, dtype=torch.float64)
    spikes = (potential > THETA).double()

    neighbors = sns_neighbor_spikes(potential, tau_m=TAU_M, theta=THETA).double()
    from_neighbors = ((neighbors - spikes.unsqueeze(0)) * error.unsqueeze(0)).sum(1)
    from_na = neighbor_loss_change(potential, error, membrane_decay=1.0 - 1.0 / TAU_M, theta=THETA)

    torch.testing.assert_close(from_neighbors, from_na)


# --- ranks ----------------------------------------------------------------------------------


def test_neighbor_rank_by_distance():
    # u = [1.5, 0.3, 0.34]: distances 0.5 (p = 0), 0.7 (p = 1), 0.66 (p = 2).
    potential = potentials_of([1.5, 0.3, 0.1])
    expected = {0b010: 1, 0b101: 2, 0b110: 3, 0b000: 0, 0b111: 0, 0b100: 0}

    for after, rank in expected.items():
        found = neighbor_ranks(potential, torch.tensor([after]), tau_m=TAU_M, theta=THETA).item()
        assert found == rank, f"train {after:03b}: rank {found}, expected {rank}"


def test_neighbor_rank_ties_go_to_earlier_step():
    # Currents [1.5, 0.5] give u = [1.5, 0.5], so both distances are 0.5. Neighbor p = 0
    # is [0, 1] (u'[1] = 0.8 + 0.5 fires) and neighbor p = 1 is [1, 1].
    potential = potentials_of([1.5, 0.5])

    first = neighbor_ranks(potential, torch.tensor([0b01]), tau_m=TAU_M, theta=THETA).item()
    second = neighbor_ranks(potential, torch.tensor([0b11]), tau_m=TAU_M, theta=THETA).item()

    assert (first, second) == (1, 2)


def test_greedy_distances_by_hand():
    # u = [1.5, 0.3, 0.34], train [1, 0, 0] (index 4). Train [0, 0, 0]: -0.5 at step 0
    # keeps m = 1, u'[1] = 1.1 needs -0.1, then u'[2] = 0.34 + 0.8 * 0.7 = 0.9 is silent:
    # 0.25 + 0.01 = 0.26. Train [0, 1, 1]: -0.5, a natural spike at 1, then u'[2] = 0.1
    # needs +0.9: 0.25 + 0.81 = 1.06.
    potential = potentials_of([1.5, 0.3, 0.1])

    squared = greedy_squared_distances(potential, tau_m=TAU_M, theta=THETA).squeeze(1)

    expected = [0.26, 0.27, 0.25, 1.06, 0.0, 0.66**2, 0.49, 1.3]
    assert squared.tolist() == pytest.approx(expected)


def test_all_train_ranks_by_hand():
    # The hand-worked squared distances, sorted: index 2 (0.25), 0 (0.26), 1 (0.27),
    # 5 (0.4356), 6 (0.49), 3 (1.06), 7 (1.3). Index 4 is the old train.
    potential = potentials_of([1.5, 0.3, 0.1]).expand(3, 7)
    after = torch.tensor([2, 0, 1, 5, 6, 3, 7])
    before = torch.full_like(after, 4)

    ranks = all_train_ranks(potential, before, after, tau_m=TAU_M, theta=THETA)

    assert ranks.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_rank_ties_go_to_earlier_step():
    # A silent neuron with u = 0: every single-spike train is at distance 1, and neighbor p
    # is the train with its spike at step p.
    potential = torch.zeros(3, 3, dtype=torch.float64)
    after = torch.tensor([0b100, 0b010, 0b001])
    before = torch.zeros_like(after)

    sns = neighbor_ranks(potential, after, tau_m=TAU_M, theta=THETA)
    among_all = all_train_ranks(potential, before, after, tau_m=TAU_M, theta=THETA)

    assert sns.tolist() == [1, 2, 3]
    assert among_all.tolist() == [1, 2, 3]


def slow_greedy_distance(potential: list[float], target: tuple[int, ...]) -> float:
    """Squared greedy distance of one neuron to one train, step by step in Python."""
    decay = 1.0 - 1.0 / TAU_M
    membrane_gap = 0.0
    total = 0.0
    for t, (u, fire) in enumerate(zip(potential, target)):
        original_membrane = 0.0 if u > THETA else u
        free = u + decay * membrane_gap
        if fire:
            change = max(THETA - free, 0.0)
            membrane = 0.0
        else:
            change = min(THETA - free, 0.0)
            membrane = min(free, THETA)
        total += change**2
        membrane_gap = membrane - original_membrane
    return total


def test_greedy_distances_match_slow_loop():
    generator = torch.Generator().manual_seed(3)
    current = torch.rand(4, 5, generator=generator, dtype=torch.float64) * 1.4
    potential = lif_membrane(current, LIFParameters(TAU_M, 2.0, THETA))

    squared = greedy_squared_distances(potential, tau_m=TAU_M, theta=THETA)

    for neuron in range(5):
        column = potential[:, neuron].tolist()
        for index, target in enumerate(itertools.product((0, 1), repeat=4)):
            expected = slow_greedy_distance(column, target)
            assert squared[index, neuron].item() == pytest.approx(expected), (neuron, target)


def test_greedy_distance_of_neighbors_is_sns_distance():
    generator = torch.Generator().manual_seed(4)
    current = torch.rand(6, 200, generator=generator, dtype=torch.float64) * 1.3
    potential = lif_membrane(current, LIFParameters(TAU_M, 2.0, THETA))

    squared = greedy_squared_distances(potential, tau_m=TAU_M, theta=THETA)
    neighbor_index = spike_train_index(sns_neighbor_spikes(potential, tau_m=TAU_M, theta=THETA).transpose(0, 1))
    own_index = spike_train_index(potential > THETA)

    torch.testing.assert_close(squared.gather(0, neighbor_index), (THETA - potential).square())
    assert squared.gather(0, own_index.unsqueeze(0)).abs().max().item() == 0.0


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"iterations": 0}, "iterations=0"),
        ({"time_steps": 13}, "time_steps=13"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"tau_m": 0.5}, "tau_m=0.5"),
        ({"grad_clip": 0.0}, "grad_clip=0.0"),
        ({"kernel": "fast"}, "kernel='fast'"),
        ({"device": "tpu"}, "device='tpu'"),
        ({"architecture": "15X5"}, "'15X5'"),
    ],
)
def test_invalid_settings_raise(changes, named):
    with pytest.raises(ValueError) as raised:
        NeighborhoodSettings(**changes)

    message = str(raised.value)
    assert named in message
    assert "expected" in message


def test_too_many_steps_names_limit():
    with pytest.raises(ValueError, match=r"--time-steps 12 or less"):
        NeighborhoodSettings(time_steps=16)


def test_too_few_images_raises():
    settings = NeighborhoodSettings(batch_size=8, progress=False)
    images = torch.zeros(4, 1, 28, 28)
    labels = torch.zeros(4, dtype=torch.int64)

    with pytest.raises(ValueError, match="4 images are fewer than batch_size=8"):
        run_neighborhood(settings, (images, labels))


def test_augmented_datamodule_raises(tmp_path):
    settings = NeighborhoodSettings(progress=False)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), augment=True)

    with pytest.raises(ValueError, match="augment=False"):
        run_neighborhood(settings, datamodule)


# --- runs -----------------------------------------------------------------------------------


def check_consistent(result) -> None:
    """Check the tallies against each other and against the transfer matrix."""
    overall = result.overall
    off_diagonal = result.off_diagonal_transfers()

    assert int(result.transfers.sum()) == overall.observed
    assert int(off_diagonal.sum()) == overall.changed
    assert int(overall.neighbor_ranks.sum()) == overall.changed
    assert int(overall.all_train_ranks.sum()) == overall.changed
    assert overall.changed == sum(tally.changed for tally in result.layers)
    for value in (overall.neighbor_share, overall.within_rank(1), overall.within_rank(3)):
        assert 0.0 <= value <= 1.0
    assert overall.within_rank(1) <= overall.within_rank(2) <= overall.within_rank(3) <= overall.neighbor_share

    # The nearest of all trains is always the nearest SNS neighbor, ties included, because
    # both rankings send ties to the earlier step.
    assert overall.all_train_ranks[1] == overall.neighbor_ranks[1]


def test_run_on_synthetic_images(tmp_path):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(24, 1, 12, 12, generator=generator)
    labels = torch.randint(0, 3, (24,), generator=generator)
    settings = NeighborhoodSettings(
        iterations=3,
        time_steps=5,
        batch_size=8,
        architecture="4C3-P2-16",
        num_classes=3,
        lr=0.02,
        kernel="eager",
        device="cpu",
        progress=False,
    )

    result = run_neighborhood(settings, (images, labels))

    assert [tally.neurons for tally in result.layers] == [4 * 10 * 10, 16, 3]
    assert result.overall.observed == 3 * 8 * (400 + 16 + 3)
    assert result.overall.changed > 0
    assert len(result.losses) == 3
    check_consistent(result)

    paths = write_outputs(result, tmp_path)
    record = json.loads(paths["json"].read_text())
    assert record["overall"]["changed_trains"] == result.overall.changed
    transfers = record["transfers"]["off_diagonal_before_after_count"]
    assert sum(count for _, _, count in transfers) == result.overall.changed
    assert all(before != after for before, after, _ in transfers)
    table = paths["table"].read_text()
    assert "| **all** |" in table
    assert "63%" in table
    assert paths["transfers"].stat().st_size > 0
    assert paths["rank_cdf"].stat().st_size > 0


def test_command_on_real_mnist(mnist_dir, tmp_path, capsys):
    out = tmp_path / "out"

    code = main(
        [
            "--data-dir", str(mnist_dir), "--out", str(out), "--iterations", "2",
            "--time-steps", "4", "--batch-size", "4", "--kernel", "eager", "--device", "cpu",
            "--no-progress",
        ]
    )  # fmt: skip

    assert code == 0
    printed = capsys.readouterr().out
    assert "| layers.0 (15C5) | 8640 |" in printed
    record = json.loads((out / "neighborhood.json").read_text())
    overall = record["overall"]
    assert overall["observed_trains"] == 2 * 4 * (8640 + 2560 + 300 + 10)
    assert record["transfers"]["size"] == 16
    assert record["transfers"]["unchanged_total"] + overall["changed_trains"] == overall["observed_trains"]
    assert sum(overall["neighbor_rank_counts"]) == overall["changed_trains"]
    assert overall["rank1_share"] is None or 0.0 <= overall["rank1_share"] <= 1.0
    assert not math.isnan(record["wall_time_s"])


def test_command_rejects_bad_value(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--iterations", "0"])

    assert raised.value.code == 2
    assert "--iterations 0 is invalid" in capsys.readouterr().err


def test_missing_data_names_option(tmp_path, capsys):
    folder = tmp_path / "absent"

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--data-dir", str(folder), "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert f"error: MNIST folder not found: {folder}." in err
    assert err.rstrip().endswith("Pass the folder with the four MNIST files as --data-dir.")
    assert not (tmp_path / "out").exists()
