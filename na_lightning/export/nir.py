"""Export a spiking network as a NIR graph, and a reference simulator for NIR graphs.

NIR (Neuromorphic Intermediate Representation, the ``nir`` package) describes a network as
nodes with continuous-time dynamics. :func:`export_nir` maps every spiking layer onto a
synapse node (``Conv2d`` or ``Linear``) followed by a current-based LIF neuron (``CubaLIF``),
each ``P<k>`` token onto ``SumPool2d`` followed by ``Scale`` (1.1), and the output layer's
postsynaptic current (PSC) onto a leaky integrator (``LI``). Time is measured in simulation
steps, so ``dt = 1``.

The discrete layer of this library is, for t = 0..T-1:

.. math::
    c[t] = W a_{in}[t], \\quad u[t] = (1 - 1/\\tau_m) m[t-1] + c[t], \\quad
    s[t] = [u[t] > \\theta], \\quad m[t] = u[t] (1 - s[t]),

    a[t] = (1 - 1/\\tau_s) a[t-1] + s[t] / \\tau_s

The PSC filter is linear and acts on each neuron separately, so it commutes with the
convolution, pooling, scaling and flattening that follow it. Moving it from after the spike
of one layer to the input of the next gives exactly NIR's ``CubaLIF``: its synapse state is
``a`` filtered through ``W``. With forward Euler and ``dt = 1``, ``tau_syn = tau_s``,
``tau_mem = tau_m``, ``r = tau_m``, ``v_leak = 0``, ``w_in = 1``, ``v_threshold = theta`` and
``v_reset = 0`` reproduce the update above, provided the membrane uses the synapse state of the
same step. ``docs/nir.md`` gives the derivation and where other simulators differ.

:func:`simulate_nir` runs a NIR graph with exactly that discretization. It is the reference
that the tests use to check that an exported file reproduces the network's spikes.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import na_lightning
from na_lightning.inspect import find_network
from na_lightning.nn.layers import SpikingConv2d, SpikingLinear, SumPool2d, TemporalDropout

if TYPE_CHECKING:
    import nir

OUTPUTS = ("psc", "spikes")
"""Choices of ``output``: the graph ends with the output layer's PSC or with its spikes."""

DISCRETIZATIONS = ("euler", "exponential")
"""Choices of ``discretization``, the mapping from a per-step decay ``1 - 1/tau`` to NIR time constants (see :func:`export_nir`)."""

STEP = 1.0
"""Duration of one simulation step in NIR's time unit: time constants are in steps."""


def export_nir(
    model: nn.Module, *, output: str = "psc", discretization: str = "euler"
) -> nir.NIRGraph:
    """Convert a spiking network into a NIR graph.

    Node names follow the network's module names: ``input``, ``layers.0.conv`` (``Conv2d``),
    ``layers.0.lif`` (``CubaLIF``), ``layers.1.pool`` (``SumPool2d``), ``layers.1.scale``
    (``Scale``), ``layers.4.flatten`` (``Flatten``), ``layers.4.linear`` (``Linear``), then
    ``readout`` (``LI``, only with ``output="psc"``) and ``output``. Dropout tokens are left out
    because dropout is the identity at inference. Shapes exclude the batch and time axes.
    Parameters keep the network's weight dtype, and the neuron constants are float64.

    The graph's metadata records ``time_steps``, ``encoding``, ``discretization``, ``dt`` (1.0,
    one step) and the architecture string. An analog network expects its normalized image
    ``[C, H, W]`` at every one of the ``time_steps`` steps, and an event network one frame per
    step (see :func:`graph_inputs`).

    Args:
        model: an :class:`~na_lightning.lightning.classifier.NAClassifier` or a
            :class:`~na_lightning.models.backbone.SpikingNetwork`.
        output: ``"psc"`` ends the graph with an ``LI`` node whose state is the output layer's
            PSC ``[num_classes]``, the quantity that the network returns and whose sum over
            time is the class score. ``"spikes"`` ends it at the output layer's ``CubaLIF``.
        discretization: ``"euler"`` exports each time constant ``tau`` (in steps) as it is,
            which is exact for a simulator that integrates with forward Euler and ``dt = 1``
            (decay ``1 - dt/tau``). ``"exponential"`` exports ``-1 / ln(1 - 1/tau)``, which is
            exact for a simulator that decays by ``exp(-dt/tau)`` per step and scales the
            input by ``1 - exp(-dt/tau)``. It needs every ``tau > 1``.

    Returns:
        The graph, type-checked by ``nir``. Write it with ``nir.write(path, graph)`` or
        :func:`write_nir`.

    Raises:
        ImportError: the ``nir`` package is not installed.
        TypeError: ``model`` contains no :class:`SpikingNetwork`.
        ValueError: an unknown ``output`` or ``discretization``, a time constant that the
            exponential mapping cannot represent, or a layer type without a NIR mapping.
    """
    nir = _import_nir()
    _check_choice("output", output, OUTPUTS)
    _check_choice("discretization", discretization, DISCRETIZATIONS)
    network = find_network(model)

    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(network.input_shape))}
    shape: tuple[int, ...] = network.input_shape
    for index, layer in enumerate(network.layers):
        name = f"layers.{index}"
        if isinstance(layer, SpikingConv2d):
            nodes[f"{name}.conv"] = _conv_node(nir, layer, shape)
            shape = _conv_output_shape(layer, shape)
            nodes[f"{name}.lif"] = _neuron_node(nir, layer, shape, discretization)
        elif isinstance(layer, SpikingLinear):
            if len(shape) > 1:
                nodes[f"{name}.flatten"] = nir.Flatten(
                    input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1
                )
                shape = (math.prod(shape),)
            nodes[f"{name}.linear"] = nir.Linear(weight=_array(layer.linear.weight))
            shape = (layer.linear.out_features,)
            nodes[f"{name}.lif"] = _neuron_node(nir, layer, shape, discretization)
        elif isinstance(layer, SumPool2d):
            size = layer.kernel_size
            nodes[f"{name}.pool"] = nir.SumPool2d(
                kernel_size=np.array([size, size]), stride=np.array([size, size]), padding=np.array([0, 0])
            )
            shape = (shape[0], shape[1] // size, shape[2] // size)
            nodes[f"{name}.scale"] = nir.Scale(scale=np.full(shape, layer.scale, dtype=np.float64))
        elif isinstance(layer, TemporalDropout):
            continue
        else:
            raise ValueError(
                f"Layer {name} is a {type(layer).__name__}, which has no NIR mapping; "
                "export_nir supports SpikingConv2d, SpikingLinear, SumPool2d and TemporalDropout."
            )

    if output == "psc":
        output_layer = list(network.spiking_layers.values())[-1]
        tau_s = _exported_tau(output_layer.neuron.tau_s, "tau_s", discretization)
        nodes["readout"] = nir.LI(
            tau=np.full(shape, tau_s), r=np.ones(shape), v_leak=np.zeros(shape)
        )
    nodes["output"] = nir.Output(output_type=np.array(shape))

    names = list(nodes)
    edges = list(zip(names[:-1], names[1:]))
    metadata = {
        "producer": f"na_lightning {na_lightning.__version__}",
        "architecture": network.architecture,
        "encoding": network.encoding,
        "time_steps": int(network.time_steps),
        "dt": STEP,
        "discretization": discretization,
        "output": output,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    output: str = "psc",
    discretization: str = "euler",
) -> nir.NIRGraph:
    """Export ``model`` with :func:`export_nir` and write the graph to ``path`` (HDF5).

    Returns:
        The graph that was written. ``nir.read(path)`` reads it back.
    """
    nir = _import_nir()
    graph = export_nir(model, output=output, discretization=discretization)
    nir.write(path, graph)
    return graph


def graph_inputs(model: nn.Module, inputs: Tensor) -> Tensor:
    """Arrange a network input as the per-step input of its exported graph.

    Args:
        model: the exported network (or the NAClassifier that contains it).
        inputs: what the network takes, normalized images ``[B, C, H, W]`` (analog) or event
            frames ``[B, T, C, H, W]`` (events).

    Returns:
        ``[T, B, C, H, W]``: an analog image repeated for the network's ``time_steps`` steps,
        or the frames with time first.
    """
    network = find_network(model)
    network.check_input(inputs)
    if network.encoding == "analog":
        return inputs.unsqueeze(0).expand(network.time_steps, *inputs.shape)
    return inputs.transpose(0, 1)


# --------------------------------------------------------------------------------------------
# Node construction


def _import_nir():
    try:
        return importlib.import_module("nir")
    except ImportError as error:
        raise ImportError(
            "NIR export needs the 'nir' package, which is not installed. Install it with "
            "`pip install nir`."
        ) from error


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {choices}.")


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _conv_node(nir, layer: SpikingConv2d, shape: tuple[int, ...]):
    conv = layer.conv
    weight = _array(conv.weight)
    return nir.Conv2d(
        input_shape=tuple(shape[1:]),
        weight=weight,
        stride=tuple(conv.stride),
        padding=tuple(conv.padding),
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        bias=np.zeros(conv.out_channels, dtype=weight.dtype),
    )


def _conv_output_shape(layer: SpikingConv2d, shape: tuple[int, ...]) -> tuple[int, int, int]:
    conv = layer.conv
    height, width = (
        (size + 2 * padding - conv.dilation[axis] * (conv.kernel_size[axis] - 1) - 1) // conv.stride[axis] + 1
        for axis, (size, padding) in enumerate(zip(shape[1:], conv.padding))
    )
    return (conv.out_channels, height, width)


def _neuron_node(nir, layer, shape: tuple[int, ...], discretization: str):
    options = layer.neuron
    tau_m = _exported_tau(options.tau_m, "tau_m", discretization)
    tau_s = _exported_tau(options.tau_s, "tau_s", discretization)
    return nir.CubaLIF(
        tau_syn=np.full(shape, tau_s),
        tau_mem=np.full(shape, tau_m),
        # With dt = 1, both discretizations scale the input by 1/tau_m per step, so
        # r = tau_m gives the membrane the whole current c[t], as in u = decay * m + c.
        r=np.full(shape, float(options.tau_m)),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, float(options.theta)),
        v_reset=np.zeros(shape),
        w_in=np.ones(shape),
    )


def _exported_tau(tau: float, name: str, discretization: str) -> float:
    """Return the NIR time constant whose per-step decay is ``1 - 1/tau`` under ``discretization``."""
    if discretization == "euler":
        return float(tau)
    if tau <= 1.0:
        raise ValueError(
            f"{name}={tau!r} gives a per-step decay of 0, which discretization='exponential' "
            "cannot represent (its time constant would be 0). Use discretization='euler'."
        )
    return -STEP / math.log1p(-1.0 / tau)


# --------------------------------------------------------------------------------------------
# Reference simulator


SIMULATED_NODES = (
    "Input", "Output", "Affine", "Linear", "Scale", "Conv2d", "SumPool2d", "AvgPool2d",
    "Flatten", "LI", "LIF", "CubaLI", "CubaLIF",
)
"""NIR node types that :func:`simulate_nir` runs."""


def simulate_nir(
    graph: nir.NIRGraph,
    inputs: Tensor | Mapping[str, Tensor],
    *,
    discretization: str | None = None,
    dt: float = STEP,
) -> dict[str, Tensor]:
    """Simulate a NIR graph in discrete time and return every node's output at every step.

    Within a step, nodes run in topological order, so a signal crosses the whole graph in one
    step, as in the network. A node with several incoming edges receives their sum. Neuron
    states start at 0 (``v_leak`` is added through the leak term). With ``decay = 1 - dt/tau``
    and ``gain = dt/tau`` (``"euler"``) or ``decay = exp(-dt/tau)`` and ``gain = 1 - decay``
    (``"exponential"``), one step of the neuron nodes is:

    - ``LI``: ``v = decay * v + gain * (v_leak + r * x)``; the output is ``v``.
    - ``LIF``: the same update, then ``z = v > v_threshold`` and ``v = v_reset`` where ``z``;
      the output is ``z`` (0 or 1).
    - ``CubaLI`` and ``CubaLIF``: first the synapse ``I = decay_syn * I + gain_syn * w_in * x``,
      then the membrane update of ``LI`` or ``LIF`` with the new ``I`` as input.

    Args:
        graph: a NIR graph without cycles, e.g. from :func:`export_nir` or ``nir.read``.
        inputs: ``[T, B, *shape]`` for a graph with one ``Input`` node (see
            :func:`graph_inputs`), or a mapping from ``Input`` node names to such tensors. Their
            dtype is the simulation's dtype: pass float64 for a bit-exact comparison.
        discretization: ``"euler"`` or ``"exponential"``; None takes the graph's
            ``metadata["discretization"]``, or ``"euler"`` when it has none.
        dt: step duration in the graph's time unit; graphs from :func:`export_nir` use 1.0.

    Returns:
        For every node name, its outputs ``[T, B, *shape]``: spikes as 0.0/1.0, states of
        ``LI`` nodes, and results of the linear nodes.

    Raises:
        ValueError: the graph has a cycle or an unsupported node type, or the inputs do not
            match the ``Input`` nodes.
    """
    if discretization is None:
        discretization = _metadata_text(graph, "discretization", "euler")
    _check_choice("discretization", discretization, DISCRETIZATIONS)
    order = _topological_order(graph)
    unsupported = sorted(
        {f"{name} ({type(node).__name__})" for name, node in graph.nodes.items() if type(node).__name__ not in SIMULATED_NODES}
    )
    if unsupported:
        raise ValueError(f"simulate_nir cannot run the nodes {unsupported}; it supports {SIMULATED_NODES}.")

    sources = _input_tensors(graph, inputs)
    reference = next(iter(sources.values()))
    steps = reference.shape[0]
    predecessors = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        predecessors[target].append(source)

    runners = {
        name: _NodeRunner(graph.nodes[name], discretization, dt, reference.dtype, reference.device)
        for name in order
        if name not in sources
    }
    recorded: dict[str, list[Tensor]] = {name: [] for name in order}
    for step in range(steps):
        values: dict[str, Tensor] = {}
        for name in order:
            if name in sources:
                values[name] = sources[name][step]
            else:
                incoming = [values[source] for source in predecessors[name]]
                values[name] = runners[name](sum(incoming[1:], incoming[0]))
            recorded[name].append(values[name])
    return {name: torch.stack(outputs) for name, outputs in recorded.items()}


def _metadata_text(graph, key: str, default: str) -> str:
    value = (graph.metadata or {}).get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf8")
    return str(value)


def _topological_order(graph) -> list[str]:
    remaining = {name: 0 for name in graph.nodes}
    for _, target in graph.edges:
        remaining[target] += 1
    ready = [name for name, count in remaining.items() if count == 0]
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for source, target in graph.edges:
            if source == name:
                remaining[target] -= 1
                if remaining[target] == 0:
                    ready.append(target)
    if len(order) != len(graph.nodes):
        cyclic = sorted(set(graph.nodes) - set(order))
        raise ValueError(
            f"The graph has a cycle through the nodes {cyclic}; simulate_nir runs feed-forward "
            "graphs only."
        )
    return order


def _input_tensors(graph, inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Tensor]:
    input_names = [name for name, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if isinstance(inputs, Tensor):
        if len(input_names) != 1:
            raise ValueError(
                f"The graph has the Input nodes {input_names}; pass a mapping from these names to "
                "tensors [T, B, *shape] instead of one tensor."
            )
        inputs = {input_names[0]: inputs}
    missing = sorted(set(input_names) - set(inputs))
    if missing:
        raise ValueError(f"No input tensor for the Input nodes {missing}; pass one [T, B, *shape] for each.")

    steps = {tensor.shape[0] for tensor in inputs.values()}
    if len(steps) != 1:
        raise ValueError(f"The input tensors have different numbers of steps {sorted(steps)}; expected one T.")
    for name in input_names:
        expected = tuple(int(size) for size in graph.nodes[name].input_type["input"])
        found = tuple(inputs[name].shape[2:])
        if found != expected:
            raise ValueError(
                f"Input {name!r} has shape {tuple(inputs[name].shape)}, expected [T, B, "
                f"{', '.join(map(str, expected))}] (time first, then batch)."
            )
    return {name: inputs[name] for name in input_names}


class _NodeRunner:
    """One node's step function and state, with its parameters as tensors of the simulation dtype."""

    def __init__(self, node, discretization: str, dt: float, dtype: torch.dtype, device: torch.device) -> None:
        self.kind = type(node).__name__
        self.node = node
        self.discretization = discretization
        self.dt = dt
        self.dtype = dtype
        self.device = device
        self.synapse: Tensor | None = None
        self.membrane: Tensor | None = None

        if self.kind in ("LI", "LIF"):
            self.decay, gain = self._decay_and_gain(node.tau)
            self.input_gain = gain * self._tensor(node.r)
            self.leak = gain * self._tensor(node.v_leak)
        elif self.kind in ("CubaLI", "CubaLIF"):
            self.synapse_decay, synapse_gain = self._decay_and_gain(node.tau_syn)
            self.synapse_gain = synapse_gain * self._tensor(node.w_in)
            self.decay, gain = self._decay_and_gain(node.tau_mem)
            self.input_gain = gain * self._tensor(node.r)
            self.leak = gain * self._tensor(node.v_leak)

    def _tensor(self, value) -> Tensor:
        return torch.as_tensor(np.asarray(value), device=self.device).to(self.dtype)

    def _decay_and_gain(self, tau) -> tuple[Tensor, Tensor]:
        step = self.dt / self._tensor(tau)
        if self.discretization == "euler":
            return 1.0 - step, step
        decay = torch.exp(-step)
        return decay, 1.0 - decay

    def __call__(self, inputs: Tensor) -> Tensor:
        node = self.node
        kind = self.kind
        if kind == "Output":
            return inputs
        if kind == "Linear":
            return inputs @ self._tensor(node.weight).T
        if kind == "Affine":
            return inputs @ self._tensor(node.weight).T + self._tensor(node.bias)
        if kind == "Scale":
            return inputs * self._tensor(node.scale)
        if kind == "Flatten":
            end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
            return inputs.flatten(node.start_dim + 1, end)
        if kind == "Conv2d":
            padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
            return F.conv2d(
                inputs,
                self._tensor(node.weight),
                self._tensor(node.bias),
                stride=_pair(node.stride),
                padding=padding,
                dilation=_pair(node.dilation),
                groups=int(node.groups),
            )
        if kind in ("SumPool2d", "AvgPool2d"):
            return F.avg_pool2d(
                inputs,
                _pair(node.kernel_size),
                _pair(node.stride),
                _pair(node.padding),
                divisor_override=1 if kind == "SumPool2d" else None,
            )
        return self._neuron_step(inputs)

    def _neuron_step(self, inputs: Tensor) -> Tensor:
        if self.kind in ("CubaLI", "CubaLIF"):
            if self.synapse is None:
                self.synapse = torch.zeros_like(inputs)
            self.synapse = self.synapse_decay * self.synapse + self.synapse_gain * inputs
            inputs = self.synapse
        if self.membrane is None:
            self.membrane = torch.zeros_like(inputs)
        self.membrane = self.decay * self.membrane + self.input_gain * inputs + self.leak
        if self.kind in ("LI", "CubaLI"):
            return self.membrane

        spikes = self.membrane > self._tensor(self.node.v_threshold)
        self.membrane = torch.where(spikes, self._tensor(self.node.v_reset), self.membrane)
        return spikes.to(inputs.dtype)


def _pair(value) -> tuple[int, int]:
    array = np.atleast_1d(np.asarray(value)).astype(int)
    if array.size == 1:
        return (int(array[0]), int(array[0]))
    return (int(array[0]), int(array[1]))
