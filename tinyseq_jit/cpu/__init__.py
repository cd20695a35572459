"""CPU kernels (``@njit``): one call runs a layer-direction's forward over all T steps,
one call its whole BPTT backward. See each module for the equations."""

from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward"]
