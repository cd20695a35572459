"""The char-LM of char_lm.py in torch.nn, and the DDP worker that trains it on, for
continue_in_torch.py (which imports this module only once it knows torch is installed)."""

import math
import os
import pickle
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import common
from char_lm import load_corpus
from tinyseq.data import StreamBatches, Vocab

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class TorchCharLM(nn.Module):
    """char_lm.CharLM in torch.nn: the same attribute names, so the same state-dict keys."""

    def __init__(self, vocab_size, cell, embed, hidden, layers, dropout):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = CELLS[cell](embed, hidden, num_layers=layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def load_export(path):
    """The exported model (rebuilt in torch), its config and vocabulary, and what tinyseq scored."""
    try:
        saved = torch.load(path, weights_only=True)  # no pickled code is run
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise common.UsageError(f"path {path}: torch.load cannot read it ({type(e).__name__}); "
                                f"write one with: python examples/char_lm.py --export-torch {path}") from e
    config = saved["config"]
    model = TorchCharLM(len(saved["vocab"]), config["cell"], config["embed"], config["hidden"],
                        config["layers"], config["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model, config, Vocab(saved["vocab"]), saved


def corpus(config, vocab):
    """The train and validation tokens char_lm.py used (the same text, split and vocabulary)."""
    text = load_corpus(config["data"], config["max_chars"])
    if Vocab.from_text(text) != vocab:
        raise common.UsageError("the corpus on this machine is not the one the model was trained on")
    tokens = vocab.encode(text)
    cut = len(tokens) - int(len(tokens) * config["val_fraction"])
    return tokens[:cut], tokens[cut:]


@torch.no_grad()
def validation_bpc(model, val_tokens):
    """Bits per character on the validation split, read as char_lm.py reads it (16 streams,
    256 steps, state carried)."""
    model.eval()
    total = count = 0
    state = None
    for x, y in StreamBatches(val_tokens, 16, 256):
        logits, state = model(torch.from_numpy(x), state)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             torch.from_numpy(y).reshape(-1), reduction="sum").item()
        count += y.size
    model.train()
    return total / count / math.log(2)


def worker(rank, world, port, args, results_path):
    """One DDP process: the rows ``rank::world`` of every chunk, truncated BPTT, Adam, clipping."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model, config, vocab, _ = load_export(args.path)
    train_tokens, val_tokens = corpus(config, vocab)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=config["lr"] * args.lr_scale)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.warmup))
    batches = StreamBatches(train_tokens, config["batch_size"], config["bptt"])
    state, curve = None, []
    for step, (x, y) in enumerate(batches):
        if step == args.steps:
            break
        x, y = torch.from_numpy(x[:, rank::world]), torch.from_numpy(y[:, rank::world])
        logits, state = ddp(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients of the two processes here
        nn.utils.clip_grad_norm_(ddp.parameters(), config["clip"])
        optimizer.step()
        warmup.step()
        state = detach(state)
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # for the log only: the loss over both halves of the batch
        curve.append(mean.item() / world / math.log(2))
        if rank == 0 and (step + 1) % args.log_every == 0:
            print(f"step {step + 1}: train bpc {np.mean(curve[-args.log_every:]):.3f}", flush=True)
    if rank == 0:
        common.write_json(results_path, {"train_bpc": curve, "val_bpc": validation_bpc(model, val_tokens)})
    dist.barrier()  # leave together: rank 0 validated while rank 1 waited
    del ddp
    dist.destroy_process_group()
    # NOTE: even after a clean destroy_process_group, torch 2.13's teardown at interpreter
    # exit aborted rank 1 in about 3% of runs here ("terminate called without an active
    # exception", SIGABRT). Everything is done and written, so skip that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
