"""Neural-network building blocks: modules, cells, recurrent layers, losses, init."""

from . import functional, init, utils
from .module import Module, Parameter
from .containers import ModuleDict, ModuleList, Sequential
from .layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Tanh
from .rnn import GRU, LSTM, RNN, GRUCell, GRUStep, LSTMCell, LSTMStep, RNNCell, RNNStep
from .recurrent import Bidirectional, Cell, Recurrent, Stacked
from .attention import Attention
from .cells import NARX, DeepTransitionCell, JordanCell, NARXCell, RecursiveNN
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
