"""The public spiking-neuron function: LIF forward with a choice of backward."""

from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import torch
from torch import Tensor

from na_lightning.functional.lif import LIFParameters, lif_forward
from na_lightning.functional.na import DISTANCE_WEIGHTS, ERROR_VECTORS, na_current_grad
from na_lightning.functional.surrogate import stbp_lif

log = logging.getLogger(__name__)

GRADIENTS = ("na", "stbp")
KERNELS = ("auto", "compiled", "eager")
SUPPORTED_DTYPES = (torch.float32, torch.float64)


class LIFOutput(NamedTuple):
    """Output of :func:`lif_neuron`.

    Attributes:
        psc: postsynaptic current, the layer's output, shape ``[T, ...]``.
        potential: pre-reset membrane potential, detached, shape ``[T, ...]``.
            Spikes are ``potential > theta``.
    """

    psc: Tensor
    potential: Tensor


class GradientRescale:
    """Per-layer rescaling of NA gradients, shared by the spiking layers of one network.

    Processing the layers from the output back, each hidden layer's gradient is
    multiplied by ``1.2 * ln(ref / (mean|delta| + 1e-5) + 1.02)``, where ``ref`` is
    the mean absolute gradient of the output layer in the same backward pass. The
    output layer's backward runs first and records ``ref`` here. Create a new
    instance for every forward pass.
    """

    def __init__(self) -> None:
        self.reference: Tensor | None = None

    def scale(self, delta: Tensor, *, output_layer: bool) -> Tensor:
        """Record the reference (output layer) or rescale ``delta`` (hidden layer)."""
        magnitude = delta.abs().mean()
        if output_layer:
            self.reference = magnitude
            return delta
        if self.reference is None:
            raise RuntimeError(
                "Gradient rescaling found no output-layer reference: the output layer's "
                "backward did not run first. Pass output_layer=True to the last spiking "
                "layer that shares this GradientRescale, or disable rescaling."
            )
        factor = 1.2 * torch.log(self.reference / (magnitude + 1e-5) + 1.02)
        return delta * factor


class _NAFunction(torch.autograd.Function):
    """LIF forward; NA aggregated gradient backward (returns dL/dcurrent)."""

    @staticmethod
    def forward(ctx, current, params, error, distance, kernel, rescale, output_layer):
        simulate = _select_kernel(kernel, current.device.type, "forward")
        steps = current.shape[0]
        flat_psc, flat_potential = simulate(current.reshape(steps, -1), *params)
        psc = flat_psc.reshape(current.shape)
        potential = flat_potential.reshape(current.shape)
        ctx.save_for_backward(potential)
        ctx.options = (params, error, distance, kernel, rescale, output_layer)
        ctx.mark_non_differentiable(potential)
        return psc, potential

    @staticmethod
    def backward(ctx, grad_psc, grad_potential):
        (potential,) = ctx.saved_tensors
        params, error, distance, kernel, rescale, output_layer = ctx.options
        shape = potential.shape
        steps = shape[0]
        flat_potential = potential.reshape(steps, -1)
        flat_grad = grad_psc.reshape(steps, -1)
        if flat_grad.dtype != flat_potential.dtype:
            flat_grad = flat_grad.to(flat_potential.dtype)

        aggregate = _select_kernel(kernel, potential.device.type, "backward")
        delta = aggregate(
            flat_potential,
            flat_grad,
            tau_m=params.tau_m,
            tau_s=params.tau_s,
            theta=params.theta,
            error=error,
            distance=distance,
        ).reshape(shape)

        if rescale is not None:
            delta = rescale.scale(delta, output_layer=output_layer)
        return delta, None, None, None, None, None, None


_EAGER_KERNELS = {"forward": lif_forward, "backward": na_current_grad}


@functools.cache
def _compiled_kernel(direction: str):
    # Inputs are flattened to [T, N] and N is dynamic, so each kernel compiles once
    # per T, dtype, device and error/distance choice (cached on disk by Inductor).
    # NOTE: after torch._dynamo.config.recompile_limit versions (8 in torch 2.14)
    # Dynamo runs further versions eagerly and logs a warning; the results are the same.
    return torch.compile(_EAGER_KERNELS[direction], dynamic=True)


@functools.cache
def _compiler_works(device_type: str) -> bool:
    """Compile a tiny NA backward once per device type to find out if a compiler is present."""
    try:
        potential = torch.tensor([[0.5, 1.5], [1.2, 0.2]], device=device_type)
        _compiled_kernel("backward")(
            potential, torch.ones_like(potential), tau_m=5.0, tau_s=2.0, theta=1.0
        )
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: use eager
        log.warning(
            "torch.compile failed on %s (%s: %s); the NA backward runs eagerly, which is "
            "slower. Install a C++ compiler (CPU) or Triton (CUDA), or pass kernel='eager' "
            "to silence this warning.",
            device_type,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return False
    return True


def _select_kernel(kernel: str, device_type: str, direction: str):
    """Return the forward (LIF) or backward (NA) kernel: compiled or eager."""
    if kernel == "eager" or torch.compiler.is_compiling():
        return _EAGER_KERNELS[direction]
    if kernel == "compiled" or _compiler_works(device_type):
        return _compiled_kernel(direction)
    return _EAGER_KERNELS[direction]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {choices}.")


def check_neuron_options(
    tau_m: float, tau_s: float, theta: float, grad: str, error: str, distance: str, kernel: str
) -> None:
    """Raise ValueError for a neuron constant or gradient option that :func:`lif_psc` rejects."""
    for name, value in (("tau_m", tau_m), ("tau_s", tau_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 1.0):
            raise ValueError(
                f"{name}={value!r} is invalid; expected a time constant >= 1 step, "
                f"so that the decay factor 1 - 1/{name} lies in [0, 1)."
            )
    if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta={theta!r} is invalid; expected a finite threshold > 0.")
    _check_choice("grad", grad, GRADIENTS)
    _check_choice("error", error, ERROR_VECTORS)
    _check_choice("distance", distance, DISTANCE_WEIGHTS)
    _check_choice("kernel", kernel, KERNELS)


def _check_arguments(current, tau_m, tau_s, theta, grad, error, distance, kernel, check_finite):
    if not isinstance(current, Tensor):
        raise TypeError(
            f"current must be a torch.Tensor of shape [T, ...], got {type(current).__name__}."
        )
    if current.dim() < 1 or current.shape[0] < 1:
        raise ValueError(
            f"current must have shape [T, ...] with T >= 1 time steps, got shape "
            f"{tuple(current.shape)}. Put the time axis first, e.g. x.unsqueeze(0) for T = 1."
        )
    if current.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"current has dtype {current.dtype}; expected torch.float32 or torch.float64. "
            "Convert it with current.float()."
        )
    check_neuron_options(tau_m, tau_s, theta, grad, error, distance, kernel)
    if check_finite and not bool(torch.isfinite(current.detach()).all()):
        bad = (~torch.isfinite(current.detach())).nonzero()[0].tolist()
        raise ValueError(
            f"current contains a non-finite value ({current[tuple(bad)].item()}) at index "
            f"{tuple(bad)}; expected finite input. Check the input normalization and the "
            "weights of the layer that feeds this neuron (a diverged training step leaves "
            "NaN weights)."
        )


def lif_neuron(
    current: Tensor,
    *,
    tau_m: float = 5.0,
    tau_s: float = 2.0,
    theta: float = 1.0,
    grad: str = "na",
    error: str = "code",
    distance: str = "code",
    rescale: GradientRescale | None = None,
    output_layer: bool = False,
    surrogate_slope: float = 4.0,
    kernel: str = "auto",
    check_finite: bool = True,
) -> LIFOutput:
    """Run LIF neurons and return their PSC and membrane potential.

    Same arguments as :func:`lif_psc`.

    Returns:
        :class:`LIFOutput` with ``psc`` and the detached pre-reset ``potential``.
    """
    _check_arguments(current, tau_m, tau_s, theta, grad, error, distance, kernel, check_finite)
    params = LIFParameters(float(tau_m), float(tau_s), float(theta))
    if grad == "stbp":
        if rescale is not None:
            raise ValueError(
                "rescale applies to NA gradients only; pass rescale=None with grad='stbp'."
            )
        return LIFOutput(*stbp_lif(current, params, surrogate_slope))

    psc, potential = _NAFunction.apply(
        current, params, error, distance, kernel, rescale, output_layer
    )
    return LIFOutput(psc, potential)


def lif_psc(
    current: Tensor,
    *,
    tau_m: float = 5.0,
    tau_s: float = 2.0,
    theta: float = 1.0,
    grad: str = "na",
    error: str = "code",
    distance: str = "code",
    rescale: GradientRescale | None = None,
    output_layer: bool = False,
    surrogate_slope: float = 4.0,
    kernel: str = "auto",
    check_finite: bool = True,
) -> Tensor:
    """Run discrete LIF neurons with synaptic current and return their PSC.

    The forward pass is exact (strict threshold ``u > theta``, hard reset to 0); the
    backward pass with respect to ``current`` is the chosen gradient.

    Args:
        current: total synaptic input, shape ``[T, ...]`` (time first, any trailing
            shape), float32 or float64, on any device.
        tau_m: membrane time constant in steps (>= 1).
        tau_s: synaptic time constant in steps (>= 1).
        theta: firing threshold (> 0).
        grad: ``"na"`` for the Neighborhood Aggregation gradient or ``"stbp"`` for
            the sigmoid surrogate gradient with BPTT.
        error: NA error vector, ``"code"`` (``e . da``) or ``"exact"`` (``g . da``);
            see :mod:`na_lightning.functional.na`.
        distance: NA distance weights, ``"code"`` (clamped ``d**-3``) or ``"paper"``
            (clamped ``1/d``).
        rescale: shared :class:`GradientRescale` for per-layer gradient rescaling, or
            ``None`` for none (NA only).
        output_layer: with ``rescale``, whether this is the network's output layer.
        surrogate_slope: sigmoid steepness for ``grad="stbp"``, per unit of potential.
        kernel: NA backward implementation: ``"compiled"`` (``torch.compile``),
            ``"eager"``, or ``"auto"`` (compiled when a compiler works, else eager).
        check_finite: raise on a non-finite input; costs one reduction (and a device
            synchronization on GPU).

    Returns:
        The postsynaptic current, shape ``[T, ...]``, values in ``[0, 1]``. It reaches 1
        only when ``tau_s = 1``, or in float32 after continuous firing once
        ``(1 - 1/tau_s)^(t+1)`` drops below 6e-8 (``tau_s = 2``: from step 24).

    Raises:
        ValueError: bad shape, ``T < 1``, a non-finite input, or an unknown option.
        TypeError: ``current`` is not a float32/float64 tensor.

    Example:
        >>> current = torch.tensor([[0.6], [0.6], [0.6]])
        >>> lif_psc(current).squeeze(1)
        tensor([0.0000, 0.5000, 0.2500])
    """
    return lif_neuron(
        current,
        tau_m=tau_m,
        tau_s=tau_s,
        theta=theta,
        grad=grad,
        error=error,
        distance=distance,
        rescale=rescale,
        output_layer=output_layer,
        surrogate_slope=surrogate_slope,
        kernel=kernel,
        check_finite=check_finite,
    ).psc
