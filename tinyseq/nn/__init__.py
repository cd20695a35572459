"""Neural-network building blocks: modules, cells, recurrent layers, losses, init."""

from . import functional, init, utils
from .module import Module, Parameter
from .layers import Dropout, Embedding, LayerNorm, Linear, Sequential
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .loss import CrossEntropyLoss, MSELoss
