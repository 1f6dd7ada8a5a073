"""The NA backward against a slow per-neuron loop written from the definition."""

from __future__ import annotations

import itertools

import pytest
import torch

from na_lightning.functional import GradientRescale, lif_neuron, lif_psc, na_current_grad, psc_filter

OPTIONS = list(itertools.product(("code", "exact"), ("code", "paper")))


def simulate_neuron(current, tau_m, tau_s, theta, flip_at=None):
    """Simulate one neuron step by step; optionally flip its firing at ``flip_at``.

    Returns the pre-reset potentials, the spikes and the PSC as Python lists.
    """
    alpha = 1.0 - 1.0 / tau_m
    beta = 1.0 - 1.0 / tau_s
    membrane = 0.0
    psc = 0.0
    potentials, spikes, pscs = [], [], []
    for t, c in enumerate(current):
        potential = alpha * membrane + c
        fired = potential > theta
        if t == flip_at:
            # The minimum perturbation moves the membrane exactly onto theta and
            # flips the firing status. A lost spike keeps the membrane at theta.
            fired = not fired
            membrane = 0.0 if fired else theta
        else:
            membrane = 0.0 if fired else potential
        psc = beta * psc + (1.0 if fired else 0.0) / tau_s
        potentials.append(potential)
        spikes.append(fired)
        pscs.append(psc)
    return potentials, spikes, pscs


def reference_delta(current, grad_psc, tau_m, tau_s, theta, error, distance):
    """Aggregated gradient of one neuron by re-simulating every neighbor in full."""
    steps = len(current)
    beta = 1.0 - 1.0 / tau_s
    potentials, _, pscs = simulate_neuron(current, tau_m, tau_s, theta)

    psc_error = [0.0] * steps
    running = 0.0
    for t in reversed(range(steps)):
        running = grad_psc[t] + beta * running
        psc_error[t] = running
    weights_for_change = psc_error if error == "code" else grad_psc

    bound, power = (5.0, 3) if distance == "code" else (10.0, 1)
    delta = []
    for p in range(steps):
        _, _, neighbor_pscs = simulate_neuron(current, tau_m, tau_s, theta, flip_at=p)
        loss_change = sum(
            weights_for_change[t] * (neighbor_pscs[t] - pscs[t]) for t in range(steps)
        )
        gap = theta - potentials[p]
        weight = bound if gap == 0 else max(-bound, min(bound, gap**-power))
        delta.append(loss_change * weight)
    return delta


def na_grad(current, grad_psc, **options):
    current = current.clone().requires_grad_(True)
    psc = lif_psc(current, kernel="eager", **options)
    psc.backward(grad_psc)
    return current.grad


@pytest.mark.parametrize(("error", "distance"), OPTIONS)
@pytest.mark.parametrize("steps", [1, 2, 5, 30])
def test_na_matches_reference_loop(steps, error, distance):
    generator = torch.Generator().manual_seed(steps * 7 + len(error) + len(distance))
    neurons = 40 if steps == 30 else 150
    tau_m, tau_s, theta = 5.0, 2.0, 1.0
    current = torch.rand(steps, neurons, generator=generator, dtype=torch.float64) * 1.4 - 0.2
    grad_psc = torch.randn(steps, neurons, generator=generator, dtype=torch.float64)

    delta = na_grad(current, grad_psc, tau_m=tau_m, tau_s=tau_s, theta=theta, error=error, distance=distance)

    expected = torch.tensor(
        [
            reference_delta(
                current[:, n].tolist(), grad_psc[:, n].tolist(), tau_m, tau_s, theta, error, distance
            )
            for n in range(neurons)
        ],
        dtype=torch.float64,
    ).T
    torch.testing.assert_close(delta, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("error", "distance"), OPTIONS)
def test_na_matches_reference_other_constants(error, distance):
    generator = torch.Generator().manual_seed(3)
    tau_m, tau_s, theta = 8.0, 4.0, 0.7
    current = torch.rand(12, 3, 4, generator=generator, dtype=torch.float64) * 0.9
    grad_psc = torch.randn(12, 3, 4, generator=generator, dtype=torch.float64)

    delta = na_grad(current, grad_psc, tau_m=tau_m, tau_s=tau_s, theta=theta, error=error, distance=distance)

    flat_current = current.reshape(12, -1)
    flat_grad = grad_psc.reshape(12, -1)
    expected = torch.tensor(
        [
            reference_delta(
                flat_current[:, n].tolist(), flat_grad[:, n].tolist(), tau_m, tau_s, theta, error, distance
            )
            for n in range(flat_current.shape[1])
        ],
        dtype=torch.float64,
    ).T.reshape(12, 3, 4)
    torch.testing.assert_close(delta, expected, rtol=1e-10, atol=1e-10)


# Hand-worked case, tau_m = 5, tau_s = 2, theta = 1, current 0.6 at each of 3 steps:
# u = [0.6, 1.08, 0.6], spikes [0, 1, 0], PSC [0, 0.5, 0.25]; the loss is a[2], so
# g = [0, 0, 1] and e = [0.25, 0.5, 1].
# Neighbor 0 gains a spike at 0, so its membrane resets and it misses the spike at 1,
#   then fires at 2: a' - a = [0.5, -0.25, 0.375]; e.da = g.da = 0.375; d = 0.4.
# Neighbor 1 loses its spike, keeps m = 1 and fires at 2: a' - a = [0, -0.5, 0.25];
#   e.da = 0, g.da = 0.25; d = -0.08.
# Neighbor 2 gains a spike at 2: a' - a = [0, 0, 0.5]; e.da = g.da = 0.5; d = 0.4.
# Weights: "code" clamps d**-3 to +-5 (all three clamp); "paper" gives 2.5, -10 (clamped), 2.5.
HAND_WORKED = {
    ("code", "code"): [1.875, 0.0, 2.5],
    ("exact", "code"): [1.875, -1.25, 2.5],
    ("code", "paper"): [0.9375, 0.0, 1.25],
    ("exact", "paper"): [0.9375, -2.5, 1.25],
}


@pytest.mark.parametrize(("error", "distance"), OPTIONS)
def test_na_hand_worked_three_steps(error, distance):
    current = torch.full((3, 1), 0.6, dtype=torch.float64)
    grad_psc = torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64)

    delta = na_grad(current, grad_psc, error=error, distance=distance)

    expected = torch.tensor(HAND_WORKED[(error, distance)], dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-12)


def test_na_membrane_exactly_at_threshold():
    # u[0] = 1.0 does not fire (strict threshold); its distance is 0 and its weight
    # takes the positive bound instead of 1/0.
    current = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    grad_psc = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)

    for distance, bound in (("code", 5.0), ("paper", 10.0)):
        delta = na_grad(current, grad_psc, error="exact", distance=distance)

        assert torch.isfinite(delta).all()
        assert delta[0, 0].item() == pytest.approx(0.5 * bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernel_matches_eager(dtype):
    generator = torch.Generator().manual_seed(11)
    potential = (torch.rand(5, 3000, generator=generator) * 2.0 - 0.3).to(dtype)
    grad_psc = torch.randn(5, 3000, generator=generator).to(dtype)
    options = {"tau_m": 5.0, "tau_s": 2.0, "theta": 1.0, "error": "exact", "distance": "code"}

    eager = na_current_grad(potential, grad_psc, **options)
    compiled = torch.compile(na_current_grad, dynamic=True)(potential, grad_psc, **options)

    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(compiled, eager, rtol=tolerance, atol=tolerance)


def test_weight_gradient_is_input_times_delta():
    # dW = sum_t delta[t]^T a_in[t] for a linear layer.
    generator = torch.Generator().manual_seed(5)
    inputs = torch.rand(5, 4, 6, generator=generator, dtype=torch.float64)
    weight = (torch.randn(3, 6, generator=generator, dtype=torch.float64) * 0.8).requires_grad_(True)
    grad_psc = torch.randn(5, 4, 3, generator=generator, dtype=torch.float64)

    current = inputs @ weight.T
    lif_psc(current, kernel="eager").backward(grad_psc)

    delta = na_grad(current.detach(), grad_psc)
    expected = torch.einsum("tbo,tbi->oi", delta, inputs)
    torch.testing.assert_close(weight.grad, expected)


def test_rescale_scales_hidden_layer_by_output_reference():
    generator = torch.Generator().manual_seed(2)
    inputs = torch.rand(5, 8, 10, generator=generator, dtype=torch.float64) * 2
    hidden_weight = torch.randn(12, 10, generator=generator, dtype=torch.float64)
    output_weight = torch.randn(3, 12, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(5, 8, 3, generator=generator, dtype=torch.float64)

    def run(rescale):
        hidden_current = (inputs @ hidden_weight.T).requires_grad_(True)
        hidden = lif_psc(hidden_current, rescale=rescale, kernel="eager")
        output_current = hidden @ output_weight.T
        output_current.retain_grad()
        output = lif_psc(output_current, rescale=rescale, output_layer=True, kernel="eager")
        output.backward(grad_out)
        return hidden_current.grad, output_current.grad

    plain_hidden, plain_output = run(None)
    scaled_hidden, scaled_output = run(GradientRescale())

    reference = plain_output.abs().mean()
    factor = 1.2 * torch.log(reference / (plain_hidden.abs().mean() + 1e-5) + 1.02)
    torch.testing.assert_close(scaled_output, plain_output)
    torch.testing.assert_close(scaled_hidden, plain_hidden * factor)
    assert not torch.allclose(factor, torch.ones_like(factor))


def test_rescale_without_output_layer_raises():
    current = torch.rand(3, 4, requires_grad=True) * 2
    psc = lif_psc(current, rescale=GradientRescale(), kernel="eager")
    with pytest.raises(RuntimeError, match="output_layer=True"):
        psc.sum().backward()


def test_na_step_moves_single_neuron_toward_target():
    # A single neuron whose spike train differs from the target: the gradient through
    # the Heaviside step is zero, NA's is not, and plain SGD on NA reaches the target.
    generator = torch.Generator().manual_seed(0)
    steps, inputs = 8, 30
    input_psc = psc_filter(
        (torch.rand(steps, inputs, generator=generator, dtype=torch.float64) < 0.3).double(), 2.0
    )
    weight = (torch.randn(inputs, generator=generator, dtype=torch.float64) * 0.3).requires_grad_(True)
    target_spikes = torch.tensor([0, 0, 1, 0, 0, 1, 0, 1], dtype=torch.float64)
    target_psc = psc_filter(target_spikes.unsqueeze(1), 2.0).squeeze(1)

    hard_current = input_psc @ weight
    hard_spikes = (hard_current > 1.0).double()
    assert hard_spikes.requires_grad is False  # the Heaviside step passes no gradient

    def spike_train():
        output = lif_neuron((input_psc @ weight).unsqueeze(1), kernel="eager")
        return (output.potential.squeeze(1) > 1.0).double()

    start_mismatch = (spike_train() - target_spikes).abs().sum().item()
    assert start_mismatch > 0
    for _ in range(300):
        weight.grad = None
        psc = lif_psc((input_psc @ weight).unsqueeze(1), kernel="eager").squeeze(1)
        loss = 0.5 * ((psc - target_psc) ** 2).sum()
        loss.backward()
        assert weight.grad.abs().sum() > 0
        with torch.no_grad():
            weight -= 0.05 * weight.grad
        if torch.equal(spike_train(), target_spikes):
            break
    assert torch.equal(spike_train(), target_spikes)


def test_output_is_finite_for_extreme_inputs():
    current = torch.tensor(
        [[1e6, -1e6, 1.0, 0.0], [-1e6, 1e6, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]], requires_grad=True
    )
    psc = lif_psc(current, kernel="eager")
    psc.backward(torch.ones_like(psc))
    assert torch.isfinite(psc).all()
    assert torch.isfinite(current.grad).all()
