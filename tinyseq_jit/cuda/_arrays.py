"""Where a GPU kernel call's arrays come from and where its results go.

A caller hands the kernels NumPy arrays or numba.cuda device arrays. NumPy arguments are
checked as the CPU kernels check them and uploaded once; device arguments are checked by
shape and dtype and read where they are, never copied to the host and never written. The
results go back the way the arguments came: NumPy arrays for NumPy arguments, device
arrays left on the GPU for device ones. ``lengths`` and ``grad_norms`` are host arrays
either way (the checks read ``lengths``; the gradient norms are for reading).
"""

import numpy as np
from numba import cuda

from .._contract import Grads, weight_grads
from ..cpu._common import Inputs, check_inputs, check_shapes, padding_mask
from ._common import KERNELS, line
from ._runtime import launch, on_device


def to_host(*arrays):
    """The device arrays copied to NumPy arrays (None stays None): results for NumPy arguments."""
    return tuple(None if a is None else a.copy_to_host() for a in arrays)


def left_on_device(*arrays):
    """The device arrays as they are: results for device arguments."""
    return arrays


def receive(name, gates, x, states, weights, lengths, reverse, allowed=("w_ih", "w_hh", "b_ih", "b_hh")):
    """A forward's arguments checked, as ``Inputs`` holding x, the states and the weights on
    the device, and the function that returns its results (``to_host`` or ``left_on_device``).

    x, the states and the weights are either all NumPy arrays or all C-contiguous device
    arrays; the device ones are used in place, except x when ``lengths`` pads some step:
    that is read through a copy with its padded steps zeroed (as the CPU kernels do).
    NOTE: the backward reads them again (x for dW_ih, the weights), so a caller must not
    write into its device arguments between a forward and its backward.
    """
    given = {"x": x, **dict(zip(("h0", "c0"), states)), **{k: v for k, v in weights.items() if v is not None}}
    where = {k: on_device(v) for k, v in given.items()}
    if not any(where.values()):
        inputs = check_inputs(name, gates, x, states, weights, lengths, reverse, allowed)
        upload = cuda.to_device
        return inputs._replace(x=upload(inputs.x), states=tuple(upload(s) for s in inputs.states),
                               w={k: upload(v) for k, v in inputs.w.items()}), to_host
    if not all(where.values()):
        host = ", ".join(k for k, v in where.items() if not v)
        raise TypeError(f"{name}: x, the states and the weights must be all NumPy arrays or all device arrays, "
                        f"got device arrays and NumPy ones ({host})")
    if on_device(lengths):
        raise TypeError(f"{name}: lengths must be a host array or a list (it is checked on the host), "
                        "got a device array")
    for k, v in given.items():
        if not v.is_c_contiguous():
            raise ValueError(f"{name}: the device array {k} must be C-contiguous, got strides {v.strides}")
    lengths = check_shapes(name, gates, x, states, weights, lengths, allowed)
    padding = padding_mask(lengths, x.shape[0])
    if padding is not None:
        unpadded = cuda.device_array(x.shape, x.dtype)
        launch(KERNELS[x.dtype.name]["zero_padded"], *line(x.size), x, cuda.to_device(lengths), unpadded)
        x = unpadded
    w = {k: v for k, v in weights.items() if v is not None}
    return Inputs(x, tuple(states), w, lengths, padding, bool(reverse)), left_on_device


def receive_grads(name, inputs, d_out, *d_states):
    """A backward's incoming gradients on the device: d_out (T, B, H) as given and a copy
    of each final state's (B, H), which the loop accumulates into; and the function that
    returns its results, by where d_out is. NumPy gradients are cast to x's dtype."""
    (steps, batch, _), dtype = inputs.x.shape, np.dtype(inputs.x.dtype)
    hidden = inputs.states[0].shape[1]
    given = (d_out, *d_states)
    expected = [(steps, batch, hidden)] + [(batch, hidden)] * len(d_states)
    names = ("d_out", "d_h_n", "d_c_n")
    if not any(on_device(g) for g in given):
        given = [np.ascontiguousarray(g, dtype=dtype) for g in given]
        give = to_host
    elif all(on_device(g) for g in given):
        for what, g in zip(names, given):
            if g.dtype != dtype or not g.is_c_contiguous():
                raise TypeError(f"{name}: the device array {what} must be C-contiguous and of x's dtype {dtype}, "
                                f"got {g.dtype} with strides {g.strides}")
        give = left_on_device
    else:
        host = ", ".join(what for what, g in zip(names, given) if not on_device(g))
        raise TypeError(f"{name}: d_out and the final states' gradients must be all NumPy arrays or all device "
                        f"arrays, got device arrays and NumPy ones ({host})")
    for what, g, shape in zip(names, given, expected):
        if g.shape != shape:
            raise ValueError(f"{name}: {what} has shape {g.shape}, expected {shape}")
    d_out, *d_states = given
    return (d_out if on_device(d_out) else cuda.to_device(d_out), *(copy(g) for g in d_states)), give


def send_grads(give, inputs, **grads):
    """The backward's result: ``weight_grads`` of the device ``grads``, brought back by ``give``."""
    return Grads(*give(*weight_grads(inputs.w, **grads)))


def copy(a):
    """A new device array holding a NumPy or device array's values."""
    if not on_device(a):
        return cuda.to_device(a)
    out = cuda.device_array(a.shape, a.dtype)
    out.copy_to_device(a)
    return out


def zeros(shape, dtype):
    """A device array of zeros."""
    return cuda.to_device(np.zeros(shape, dtype))


def summed_bias(w, size, dtype):
    """b_ih + b_hh of the device weights ``w`` (either may be absent; (size,) zeros if both are)."""
    b_ih, b_hh = w.get("b_ih"), w.get("b_hh")
    if b_ih is None or b_hh is None:
        return zeros(size, dtype) if b_ih is None and b_hh is None else (b_hh if b_ih is None else b_ih)
    bias = cuda.device_array(size, dtype)
    launch(KERNELS[np.dtype(dtype).name]["vector_sum"], *line(size), b_ih, b_hh, bias)
    return bias
