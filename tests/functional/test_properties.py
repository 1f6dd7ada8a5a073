"""Property-based tests: LIF neurons and spiking layers stay finite and bounded on hostile input.

Inputs cover random shapes, 1 to 12 time steps, float32 and float64, both gradients (NA, STBP),
every NA option (error vector, distance weights, rescaling) and extreme values: +-1e6, all zeros
and currents exactly at the threshold. The eager kernels run here because ``torch.compile``
compiles once per shape; one example runs the default kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from na_lightning.functional import lif_neuron, lif_psc
from na_lightning.models.backbone import SpikingNetwork
from na_lightning.nn.layers import (
    AnalogEncoder,
    EventEncoder,
    NeuronOptions,
    SpikingConv2d,
    SpikingLinear,
    SumPool2d,
    TemporalDropout,
)

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
NEURON_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=60)
"""Single neurons are cheap, so they get more examples."""
DTYPES = (torch.float32, torch.float64)
EXTREMES = (0.0, 1e6, -1e6)
GRADIENTS = ("na", "stbp")
ERRORS = ("code", "exact")
DISTANCES = ("code", "paper")


@st.composite
def neuron_options(draw, tau_s=st.floats(1.5, 10.0)) -> dict:
    """Keyword arguments of ``lif_psc``: time constants, threshold and gradient options."""
    return {
        "tau_m": draw(st.one_of(st.just(1.0), st.floats(1.0, 10.0))),
        "tau_s": draw(tau_s),
        "theta": draw(st.sampled_from([0.25, 1.0, 3.0])),
        "grad": draw(st.sampled_from(GRADIENTS)),
        "error": draw(st.sampled_from(ERRORS)),
        "distance": draw(st.sampled_from(DISTANCES)),
        "kernel": "eager",
    }


@st.composite
def hostile_arrays(draw, shape, theta: float) -> np.ndarray:
    """An array of ``shape`` that mixes moderate values with extremes and the threshold itself."""
    kind = draw(st.sampled_from(["mixed", "zeros", "theta", "large", "-large"]))
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "theta":
        return np.full(shape, theta)
    if kind in ("large", "-large"):
        return np.full(shape, 1e6 if kind == "large" else -1e6)
    elements = st.one_of(
        st.sampled_from([*EXTREMES, theta]),
        st.floats(-3.0 * theta, 3.0 * theta, allow_nan=False, allow_infinity=False, width=32),
    )
    return draw(hnp.arrays(np.float64, shape, elements=elements))


@st.composite
def neuron_inputs(draw, tau_s=st.floats(1.5, 10.0)):
    """``(current [T, ...], upstream gradient [T, ...], options)`` for one neuron call."""
    options = draw(neuron_options(tau_s=tau_s))
    steps = draw(st.integers(1, 12))
    trailing = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    shape = (steps, *trailing)
    dtype = draw(st.sampled_from(DTYPES))
    current = torch.tensor(draw(hostile_arrays(shape, options["theta"])), dtype=dtype)
    gradient_scale = draw(st.sampled_from([0.0, 1.0, 1e3]))
    seed = draw(st.integers(0, 2**16))
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * gradient_scale
    return current, upstream, options


def run_neuron(current: torch.Tensor, upstream: torch.Tensor, options: dict):
    current = current.clone().requires_grad_(True)
    output = lif_neuron(current, **options)
    output.psc.backward(upstream)
    return output, current.grad


@NEURON_SETTINGS
@given(neuron_inputs())
def test_lif_output_finite_in_unit_interval(case):
    current, upstream, options = case

    output, grad = run_neuron(current, upstream, options)

    assert output.psc.shape == current.shape
    assert output.psc.dtype == current.dtype
    assert torch.isfinite(output.psc).all()
    assert (output.psc >= 0).all()
    assert (output.psc < 1).all(), f"max PSC {output.psc.max().item()} for tau_s={options['tau_s']}"
    assert torch.isfinite(output.potential).all()
    assert grad is not None
    assert torch.isfinite(grad).all(), f"max |grad| {grad.abs().max().item()}"


@NEURON_SETTINGS
@given(neuron_inputs(tau_s=st.floats(1.0, 1.5)))
def test_lif_output_at_most_one_for_fast_synapse(case):
    # 1 - 1/tau_s is below 1/3 here, so float rounding, or tau_s = 1 exactly, can give a PSC of 1.
    current, upstream, options = case

    output, grad = run_neuron(current, upstream, options)

    assert torch.isfinite(output.psc).all()
    assert (output.psc >= 0).all()
    assert (output.psc <= 1).all()
    assert torch.isfinite(grad).all()


def test_psc_equals_spikes_for_tau_s_one():
    # With tau_s = 1 the PSC is the spike train itself, so the bound [0, 1) does not hold.
    current = torch.tensor([[2.0], [0.0], [2.0]])

    psc = lif_psc(current, tau_s=1.0, kernel="eager")

    assert psc.flatten().tolist() == [1.0, 0.0, 1.0]


def test_lif_psc_rounds_to_one_in_float32():
    # 1 - 0.5**25 rounds to 1 in float32, so a neuron firing at every step reaches 1 at step 24.
    current = torch.full((30, 1), 5.0)

    psc32 = lif_psc(current, tau_s=2.0, kernel="eager").flatten()
    psc64 = lif_psc(current.double(), tau_s=2.0, kernel="eager").flatten()

    assert (psc32 == 1.0).nonzero().flatten().tolist() == list(range(24, 30))
    assert (psc64 < 1.0).all()


@PROPERTY_SETTINGS
@given(neuron_inputs(), st.sampled_from([float("nan"), float("inf"), float("-inf")]), st.data())
def test_lif_rejects_non_finite_current(case, bad_value, data):
    current, _, options = case
    index = tuple(data.draw(st.integers(0, size - 1)) for size in current.shape)
    current[index] = bad_value

    with pytest.raises(ValueError, match=r"non-finite value .* at index") as excinfo:
        lif_psc(current, **options)
    assert str(index) in str(excinfo.value)


@st.composite
def layer_cases(draw):
    """A spiking layer with hostile weights and input PSCs ``[T, B, ...]``."""
    options = draw(neuron_options())
    neuron = NeuronOptions(**options)
    steps = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    weight_scale = draw(st.sampled_from([0.0, 1.0, 1e3]))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        channels, size = draw(st.integers(1, 3)), draw(st.integers(3, 6))
        layer = SpikingConv2d(channels, draw(st.integers(1, 3)), 3, padding=draw(st.integers(0, 1)), neuron=neuron)
        shape = (steps, batch, channels, size, size)
    else:
        features = draw(st.integers(1, 8))
        layer = SpikingLinear(features, draw(st.integers(1, 5)), neuron=neuron)
        shape = (steps, batch, features)
    layer = layer.to(dtype)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.mul_(weight_scale)
    inputs = torch.tensor(draw(hostile_arrays(shape, options["theta"])), dtype=dtype)
    return layer, inputs


@PROPERTY_SETTINGS
@given(layer_cases())
def test_spiking_layer_finite_in_unit_interval(case):
    layer, inputs = case
    inputs.requires_grad_(True)

    output = layer(inputs)
    (output * torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)).sum().backward()

    assert output.shape[:2] == inputs.shape[:2]
    assert torch.isfinite(output).all()
    assert (output >= 0).all()
    assert (output < 1).all()
    assert 0.0 <= float(layer.firing_rate) <= 1.0
    assert torch.isfinite(inputs.grad).all()
    for name, parameter in layer.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


@PROPERTY_SETTINGS
@given(
    neuron_options(),
    st.booleans(),
    st.sampled_from(DTYPES),
    st.sampled_from(["mixed", "zeros", "large", "-large"]),
    st.integers(1, 6),
)
def test_network_finite_with_every_option(options, rescale, dtype, kind, time_steps):
    if options["grad"] == "stbp":
        rescale = False  # rescaling applies to NA gradients only
    torch.manual_seed(0)
    network = SpikingNetwork(
        "3C3-P2-6", num_classes=3, input_shape=(1, 8, 8), time_steps=time_steps,
        neuron=NeuronOptions(**options), rescale=rescale,
    ).to(dtype)
    images = {
        "mixed": torch.randn(2, 1, 8, 8, dtype=dtype) * 3,
        "zeros": torch.zeros(2, 1, 8, 8, dtype=dtype),
        "large": torch.full((2, 1, 8, 8), 1e6, dtype=dtype),
        "-large": torch.full((2, 1, 8, 8), -1e6, dtype=dtype),
    }[kind]

    output = network(images)
    (output - 0.5).square().sum().backward()

    assert output.shape == (time_steps, 2, 3)
    assert torch.isfinite(output).all()
    assert ((output >= 0) & (output < 1)).all()
    for name, parameter in network.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


@PROPERTY_SETTINGS
@given(st.integers(1, 12), st.sampled_from(DTYPES), st.sampled_from([*EXTREMES, 1.0]), st.floats(0.0, 0.9))
def test_stateless_layers_stay_finite(steps, dtype, value, dropout):
    images = torch.full((2, 1, 4, 4), value, dtype=dtype)
    frames = torch.full((2, steps, 2, 4, 4), abs(value), dtype=dtype)

    current = AnalogEncoder(steps, tau_s=2.0)(images)
    event_current = EventEncoder(tau_s=2.0)(frames)
    pooled = SumPool2d(2)(current)
    dropped = TemporalDropout(dropout).train()(pooled)

    assert current.shape == (steps, 2, 1, 4, 4)
    assert event_current.shape == (steps, 2, 2, 4, 4)
    for tensor in (current, event_current, pooled, dropped):
        assert torch.isfinite(tensor).all()


def test_default_kernel_matches_eager_on_extremes():
    theta = 1.0
    current = torch.tensor(
        [[0.0, theta, 1e6, -1e6, 0.7], [0.5, theta, 0.2, 3.0, -0.4], [theta, 0.0, -1e6, 0.0, 1.3]]
    )
    upstream = torch.tensor([[1.0, -2.0, 0.5, 1.0, 3.0], [0.0, 1.0, -1.0, 2.0, 1.0], [1.0, 1.0, 1.0, -1.0, 0.5]])
    results = {}
    for kernel in ("auto", "eager"):
        leaf = current.clone().requires_grad_(True)
        psc = lif_psc(leaf, theta=theta, kernel=kernel)
        psc.backward(upstream)
        results[kernel] = (psc.detach(), leaf.grad)

    psc, grad = results["auto"]
    assert torch.equal(psc, results["eager"][0])
    assert torch.allclose(grad, results["eager"][1], rtol=1e-6, atol=0)
    assert torch.isfinite(grad).all()
    assert ((psc >= 0) & (psc < 1)).all()
