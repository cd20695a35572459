"""A gallery of recurrent cells written from ops: what ``nn.Recurrent(cell, backend="numba")``
compiles into fused kernels. Each cell is its equations and nothing else; the compiler
finds the products to hoist, the per-step GEMMs and the point-wise loops, and derives BPTT.

The LSTM, GRU and Elman cells use PyTorch's parameter names, shapes and gate order (i, f, g,
o; r, z, n), so ``load_from(layer)`` copies a built-in ``nn.LSTM``/``GRU``/``RNN`` layer's
weights into them and both give the same results.

    cell = cell_gallery.MGU(32, 64)
    out, h_n = nn.Recurrent(cell, backend="numba")(x)
"""

import numpy as np

from tinyseq import nn, ops
from tinyseq.nn import Parameter


class _Cell(nn.Cell):
    """Parameters made as PyTorch makes a recurrent layer's: uniform in +-1/sqrt(H)."""

    def param(self, *shape):
        bound = 1.0 / np.sqrt(self.hidden)
        rng = np.random.default_rng(self.seed)
        self.seed += 1
        return Parameter(rng.uniform(-bound, bound, shape).astype(self.dtype))

    def setup(self, hidden, state_size, dtype, seed):
        self.hidden, self.state_size = hidden, state_size
        self.dtype, self.seed = np.dtype(dtype), seed

    def load_from(self, layer, suffix="_l0"):
        """Copy a built-in layer's weights (``weight_ih_l0``, ...) into this cell's same-named ones."""
        for name, p in self.named_parameters():
            p.data[...] = getattr(layer, name + suffix).data


class Elman(_Cell):
    """h = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), as ``nn.RNN``."""

    def __init__(self, inputs, hidden, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.weight_ih, self.weight_hh = self.param(hidden, inputs), self.param(hidden, hidden)
        self.bias_ih, self.bias_hh = self.param(hidden), self.param(hidden)

    def forward(self, x, h):
        h = (x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh).tanh()
        return h, h


class LSTM(_Cell):
    """The LSTM of ``nn.LSTM``: gates i, f, g, o; c = f c + i g, h = o tanh(c).

    ``peephole``: i and f also see c_{t-1}, o sees c_t, through per-unit weights ci, cf, co
    (Gers & Schmidhuber 2000). ``coupled``: no input gate, i = 1 - f (three gate blocks f, g, o).
    """

    def __init__(self, inputs, hidden, peephole=False, coupled=False, dtype=np.float32, seed=0):
        self.setup(hidden, (hidden, hidden), dtype, seed)
        self.peephole, self.coupled = peephole, coupled
        gates = 3 if coupled else 4
        self.weight_ih, self.weight_hh = self.param(gates * hidden, inputs), self.param(gates * hidden, hidden)
        self.bias_ih, self.bias_hh = self.param(gates * hidden), self.param(gates * hidden)
        if peephole:
            if not coupled:
                self.ci = self.param(hidden)
            self.cf, self.co = self.param(hidden), self.param(hidden)

    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        if self.coupled:
            f, g, o = ops.chunk(gates, 3, axis=-1)
            f = (f + c * self.cf if self.peephole else f).sigmoid()
            i = 1 - f
        else:
            i, f, g, o = ops.chunk(gates, 4, axis=-1)
            i = (i + c * self.ci if self.peephole else i).sigmoid()
            f = (f + c * self.cf if self.peephole else f).sigmoid()
        c = f * c + i * g.tanh()
        o = (o + c * self.co if self.peephole else o).sigmoid()
        h = o * c.tanh()
        return h, (h, c)


class GRU(_Cell):
    """The GRU of ``nn.GRU``: r, z = sigmoid(...), n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),
    h = (1 - z) n + z h. ``reset_after=False``: Cho et al.'s original, where r multiplies h
    before its product, n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn): a GEMM mid-step."""

    def __init__(self, inputs, hidden, reset_after=True, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.reset_after = reset_after
        self.weight_ih, self.weight_hh = self.param(3 * hidden, inputs), self.param(3 * hidden, hidden)
        self.bias_ih, self.bias_hh = self.param(3 * hidden), self.param(3 * hidden)

    def forward(self, x, h):
        H = self.hidden
        x_r, x_z, x_n = ops.chunk(x @ self.weight_ih.T + self.bias_ih, 3, axis=-1)
        if self.reset_after:
            h_r, h_z, h_n = ops.chunk(h @ self.weight_hh.T + self.bias_hh, 3, axis=-1)
            r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
            n = (x_n + r * h_n).tanh()
        else:
            h_r, h_z = ops.chunk(h @ self.weight_hh[:2 * H].T + self.bias_hh[:2 * H], 2, axis=-1)
            r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
            n = (x_n + (r * h) @ self.weight_hh[2 * H:].T + self.bias_hh[2 * H:]).tanh()
        h = (1 - z) * n + z * h
        return h, h


class MGU(_Cell):
    """The minimal gated unit (Zhou et al. 2016): one gate f; f = sigmoid(W_f [x, h] + b_f),
    n = tanh(W_n [x, f * h] + b_n), h = (1 - f) h + f n. A GEMM mid-step."""

    def __init__(self, inputs, hidden, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.f = nn.Linear(inputs + hidden, hidden, dtype=dtype)
        self.n = nn.Linear(inputs + hidden, hidden, dtype=dtype)

    def forward(self, x, h):
        f = self.f(ops.cat([x, h], -1)).sigmoid()
        n = self.n(ops.cat([x, f * h], -1)).tanh()
        h = (1 - f) * h + f * n
        return h, h


class IndRNN(_Cell):
    """The independently recurrent network (Li et al. 2018): h = relu(W x + b + u * h), each
    unit its own recurrent weight u: no per-step GEMM at all."""

    def __init__(self, inputs, hidden, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.W = nn.Linear(inputs, hidden, dtype=dtype)
        self.u = Parameter(np.random.default_rng(seed).uniform(0, 1, hidden).astype(dtype))

    def forward(self, x, h):
        h = (self.W(x) + self.u * h).relu()
        return h, h


class MIRNN(_Cell):
    """Multiplicative integration (Wu et al. 2016): h = tanh(a * Wx * Uh + b1 * Uh + b2 * Wx + b),
    the two products meeting point-wise."""

    def __init__(self, inputs, hidden, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.W = nn.Linear(inputs, hidden, bias=False, dtype=dtype)
        self.U = nn.Linear(hidden, hidden, bias=False, dtype=dtype)
        self.alpha = Parameter(np.ones(hidden, dtype=dtype))
        self.beta_u, self.beta_w = Parameter(np.full(hidden, 0.5, dtype=dtype)), Parameter(np.full(hidden, 0.5, dtype=dtype))
        self.b = Parameter(np.zeros(hidden, dtype=dtype))

    def forward(self, x, h):
        wx, uh = self.W(x), self.U(h)
        h = (self.alpha * wx * uh + self.beta_u * uh + self.beta_w * wx + self.b).tanh()
        return h, h


class LiGRU(_Cell):
    """The light GRU (Ravanelli et al. 2018): no reset gate, ReLU candidate;
    z = sigmoid(W_z x + U_z h), n = relu(W_n x + U_n h), h = z h + (1 - z) n.
    (Its batch normalisation of W x is left out.)"""

    def __init__(self, inputs, hidden, dtype=np.float32, seed=0):
        self.setup(hidden, hidden, dtype, seed)
        self.W = nn.Linear(inputs, 2 * hidden, dtype=dtype)
        self.U = nn.Linear(hidden, 2 * hidden, bias=False, dtype=dtype)

    def forward(self, x, h):
        w_z, w_n = ops.chunk(self.W(x), 2, axis=-1)
        u_z, u_n = ops.chunk(self.U(h), 2, axis=-1)
        z = (w_z + u_z).sigmoid()
        n = (w_n + u_n).relu()
        h = z * h + (1 - z) * n
        return h, h


#: name -> constructor (inputs, hidden, dtype=...)
GALLERY = {
    "elman": Elman,
    "lstm": LSTM,
    "lstm_peephole": lambda i, h, **kw: LSTM(i, h, peephole=True, **kw),
    "lstm_coupled": lambda i, h, **kw: LSTM(i, h, coupled=True, **kw),
    "lstm_coupled_peephole": lambda i, h, **kw: LSTM(i, h, peephole=True, coupled=True, **kw),
    "gru": GRU,
    "gru_classic": lambda i, h, **kw: GRU(i, h, reset_after=False, **kw),
    "mgu": MGU,
    "indrnn": IndRNN,
    "mirnn": MIRNN,
    "ligru": LiGRU,
}
