"""NIR export: graph structure, file round trip, and spike-exact re-simulation of real inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from na_lightning.data.events import ToBinnedFrames, read_nmnist_bin
from na_lightning.data.mnist import MNISTDataModule, read_idx_images
from na_lightning.functional import psc_filter
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.models.backbone import SpikingNetwork
from tests.conftest import DATA_ROOT

nir = pytest.importorskip("nir")

from na_lightning.export.nir import export_nir, graph_inputs, simulate_nir, write_nir  # noqa: E402

MNIST_IMAGES = DATA_ROOT / "mnist" / "t10k-images-idx3-ubyte.gz"
NMNIST_RECORDING = DATA_ROOT / "nmnist" / "Test" / "0" / "00004.bin"


def mnist_classifier(**overrides) -> NAClassifier:
    """The NA paper's MNIST network, randomly initialized (seeded), in float64.

    A conv weight scale of 2 makes every layer of the untrained network spike on real digits,
    so that the comparison covers spikes in every layer.
    """
    torch.manual_seed(0)
    options = {"kernel": "eager", "conv_weight_scale": 2.0, **overrides}
    return NAClassifier(**options).double().eval()


@pytest.fixture(scope="module")
def mnist_digits() -> torch.Tensor:
    """The first 8 MNIST test images, normalized, float64 ``[8, 1, 28, 28]``."""
    if not MNIST_IMAGES.is_file():
        pytest.skip(f"real MNIST test images not found at {MNIST_IMAGES}; set NA_LIGHTNING_DATA")
    images = read_idx_images(MNIST_IMAGES)[:8].double().div(255.0)
    mean, std = MNISTDataModule.mean[0], MNISTDataModule.std[0]
    return images.sub(mean).div(std).unsqueeze(1)


class Float64EventEncoder(torch.nn.Module):
    """EventEncoder without its cast to float32: frames ``[B, T, C, H, W]`` to currents ``[T, B, C, H, W]``."""

    def __init__(self, tau_s: float) -> None:
        super().__init__()
        self.tau_s = tau_s

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return psc_filter(frames.transpose(0, 1), self.tau_s)


def network_spikes(model: NAClassifier, inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run the library network and return each spiking layer's spikes ``[T, B, ...]`` and the output PSC."""
    network = model.network
    for layer in network.spiking_layers.values():
        layer.record_potential = True
    with torch.no_grad():
        output = network(inputs)
    spikes = {
        name: (layer.potential > layer.neuron.theta).to(inputs.dtype)
        for name, layer in network.spiking_layers.items()
    }
    return spikes, output


def assert_same_spikes(model, simulated, reference):
    for name in model.network.spiking_layers:
        node_spikes = simulated[f"{name}.lif"].reshape(reference[name].shape)
        assert reference[name].sum() > 0, f"{name} is silent, so the comparison would be empty"
        mismatches = int((node_spikes != reference[name]).sum())
        assert mismatches == 0, f"{name}: {mismatches} of {node_spikes.numel()} spikes differ"


def test_mnist_graph_nodes_and_parameters():
    model = mnist_classifier()
    graph = export_nir(model)
    nodes = graph.nodes

    assert list(nodes) == [
        "input",
        "layers.0.conv", "layers.0.lif",
        "layers.1.pool", "layers.1.scale",
        "layers.2.conv", "layers.2.lif",
        "layers.3.pool", "layers.3.scale",
        "layers.4.flatten", "layers.4.linear", "layers.4.lif",
        "layers.5.linear", "layers.5.lif",
        "readout", "output",
    ]
    names = list(nodes)
    assert graph.edges == list(zip(names[:-1], names[1:]))

    assert isinstance(nodes["layers.0.conv"], nir.Conv2d)
    np.testing.assert_array_equal(nodes["layers.0.conv"].weight, model.network.layers[0].conv.weight.detach().numpy())
    assert tuple(nodes["layers.0.lif"].output_type["output"]) == (15, 24, 24)
    assert tuple(nodes["layers.3.scale"].output_type["output"]) == (40, 4, 4)
    assert tuple(nodes["layers.4.flatten"].output_type["output"]) == (640,)
    assert tuple(nodes["output"].input_type["input"]) == (10,)

    lif = nodes["layers.2.lif"]
    assert isinstance(lif, nir.CubaLIF)
    assert np.all(lif.tau_mem == 5.0)
    assert np.all(lif.tau_syn == 2.0)
    assert np.all(lif.r == 5.0)
    assert np.all(lif.v_leak == 0.0)
    assert np.all(lif.v_threshold == 1.0)
    assert np.all(lif.v_reset == 0.0)
    assert np.all(lif.w_in == 1.0)
    assert np.all(nodes["layers.1.scale"].scale == 1.1)
    np.testing.assert_array_equal(nodes["layers.1.pool"].kernel_size, [2, 2])
    assert isinstance(nodes["readout"], nir.LI)
    assert np.all(nodes["readout"].tau == 2.0)
    assert np.all(nodes["readout"].r == 1.0)

    assert graph.metadata["time_steps"] == 5
    assert graph.metadata["encoding"] == "analog"
    assert graph.metadata["discretization"] == "euler"


def test_exponential_time_constants():
    graph = export_nir(mnist_classifier(), discretization="exponential")
    lif = graph.nodes["layers.0.lif"]

    # exp(-1 / tau) must be the per-step decay 1 - 1/tau of the discrete network.
    np.testing.assert_allclose(np.exp(-1.0 / lif.tau_mem), 0.8, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.exp(-1.0 / lif.tau_syn), 0.5, rtol=0, atol=1e-15)
    assert np.all(lif.r == 5.0)


def test_file_round_trip_reproduces_mnist_spikes(tmp_path, mnist_digits):
    model = mnist_classifier()
    reference, output_psc = network_spikes(model, mnist_digits)

    path = tmp_path / "mnist.nir"
    write_nir(model, path)
    graph = nir.read(path)
    simulated = simulate_nir(graph, graph_inputs(model, mnist_digits))

    assert_same_spikes(model, simulated, reference)
    assert simulated["output"].shape == output_psc.shape == (5, 8, 10)
    torch.testing.assert_close(simulated["output"], output_psc, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(
        graph.nodes["layers.4.linear"].weight, model.network.layers[4].linear.weight.detach().numpy()
    )


def test_exponential_export_reproduces_spikes_with_exponential_simulator(tmp_path, mnist_digits):
    model = mnist_classifier()
    reference, output_psc = network_spikes(model, mnist_digits)

    path = tmp_path / "mnist_exponential.nir"
    write_nir(model, path, discretization="exponential")
    simulated = simulate_nir(nir.read(path), graph_inputs(model, mnist_digits))

    assert_same_spikes(model, simulated, reference)
    torch.testing.assert_close(simulated["output"], output_psc, rtol=0, atol=1e-12)


def test_wrong_discretization_changes_spikes(mnist_digits):
    model = mnist_classifier()
    reference, _ = network_spikes(model, mnist_digits)

    # Euler time constants run with exponential decay: exp(-1/5) = 0.819 instead of 0.8.
    simulated = simulate_nir(export_nir(model), graph_inputs(model, mnist_digits), discretization="exponential")

    differing = sum(int((simulated[f"{name}.lif"] != reference[name]).sum()) for name in reference)
    assert differing > 0


def test_spike_output_ends_at_output_neurons(mnist_digits):
    model = mnist_classifier()
    reference, _ = network_spikes(model, mnist_digits)
    graph = export_nir(model, output="spikes")

    assert "readout" not in graph.nodes
    simulated = simulate_nir(graph, graph_inputs(model, mnist_digits))
    assert torch.equal(simulated["output"], reference["layers.5"])


def test_event_network_reproduces_nmnist_spikes(tmp_path):
    if not NMNIST_RECORDING.is_file():
        pytest.skip(f"real N-MNIST recording not found at {NMNIST_RECORDING}; set NA_LIGHTNING_DATA")
    frames = ToBinnedFrames(sensor_size=(34, 34, 2), time_steps=30)(read_nmnist_bin(NMNIST_RECORDING))
    inputs = torch.from_numpy(frames).double().unsqueeze(0)
    torch.manual_seed(1)
    model = NAClassifier(
        architecture="8C5-P2-D0.2-32",
        input_shape=(2, 34, 34),
        encoding="events",
        time_steps=30,
        tau_m=8.0,
        tau_s=4.0,
        padding=1,
        kernel="eager",
        conv_weight_scale=4.0,
        linear_weight_scale=2.0,
    ).double().eval()
    # EventEncoder casts frames to float32; this encoder applies the same synaptic filter in
    # the input's dtype, so that the whole network runs in float64.
    model.network.encoder = Float64EventEncoder(model.network.encoder.tau_s)
    reference, output_psc = network_spikes(model, inputs)

    path = tmp_path / "nmnist.nir"
    write_nir(model, path)
    graph = nir.read(path)

    assert "layers.2.dropout" not in graph.nodes
    assert graph.metadata["encoding"] == "events"
    simulated = simulate_nir(graph, graph_inputs(model, inputs))
    assert_same_spikes(model, simulated, reference)
    torch.testing.assert_close(simulated["output"], output_psc, rtol=0, atol=1e-12)


def test_simulator_single_neuron_closed_form():
    # One LIF neuron (tau_m = 5, r = 5) with its PSC (LI, tau = 2, r = 1) on a constant
    # current of 0.6: u = 0.6, 1.08 (spike, reset), 0.6; PSC = 0, 0.5, 0.25.
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([1])),
            "lif": nir.LIF(
                tau=np.array([5.0]), r=np.array([5.0]), v_leak=np.array([0.0]), v_threshold=np.array([1.0])
            ),
            "psc": nir.LI(tau=np.array([2.0]), r=np.array([1.0]), v_leak=np.array([0.0])),
            "output": nir.Output(output_type=np.array([1])),
        },
        edges=[("input", "lif"), ("lif", "psc"), ("psc", "output")],
    )
    current = torch.full((3, 1, 1), 0.6, dtype=torch.float64)

    simulated = simulate_nir(graph, current)

    assert simulated["lif"].flatten().tolist() == [0.0, 1.0, 0.0]
    torch.testing.assert_close(simulated["output"].flatten(), torch.tensor([0.0, 0.5, 0.25], dtype=torch.float64))


def test_export_accepts_spiking_network():
    network = SpikingNetwork("4C3-P2-16", num_classes=3, input_shape=(1, 8, 8), time_steps=4)
    graph = export_nir(network)

    assert tuple(graph.nodes["output"].input_type["input"]) == (3,)
    assert graph.metadata["time_steps"] == 4


def test_export_rejects_bad_arguments():
    model = mnist_classifier()

    with pytest.raises(ValueError, match="discretization='trapezoid' is not supported"):
        export_nir(model, discretization="trapezoid")
    with pytest.raises(ValueError, match="output='currents' is not supported"):
        export_nir(model, output="currents")
    with pytest.raises(TypeError, match="Expected an NAClassifier or a SpikingNetwork"):
        export_nir(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="tau_s=1.0 gives a per-step decay of 0"):
        export_nir(mnist_classifier(tau_s=1.0), discretization="exponential")


def test_simulator_rejects_wrong_input_shape():
    model = mnist_classifier()
    graph = export_nir(model)

    with pytest.raises(ValueError, match=r"expected \[T, B, 1, 28, 28\]"):
        simulate_nir(graph, torch.zeros(5, 1, 28, 28, dtype=torch.float64))
