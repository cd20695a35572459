"""Graduate to PyTorch: continue training a tinyseq char-LM with DistributedDataParallel.

``char_lm.py --export-torch`` writes the trained model as a PyTorch state dict plus the
config that rebuilds it. This script rebuilds the same model in ``torch.nn``, checks that it
scores the validation split as tinyseq did, then trains it on with
``torch.nn.parallel.DistributedDataParallel``: 2 processes (``torch.multiprocessing``), the
gloo backend, each process taking half of the B streams, gradients averaged between them.

    python examples/char_lm.py --export-torch runs/char_lm/model.pt
    python examples/continue_in_torch.py runs/char_lm/model.pt --steps 200

The loss carries on from where tinyseq left it rather than starting again from a fresh
model's (log2 of the vocabulary size bits per character). NOTE: Adam's moments are not
exported, so the first few updates take full-size steps; the learning rate is warmed up.
"""

import argparse
import json
import math
import os
import pathlib
import socket
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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
    saved = torch.load(path, weights_only=True)  # no pickled code is run
    config = saved["config"]
    model = TorchCharLM(len(saved["vocab"]), config["cell"], config["embed"], config["hidden"],
                        config["layers"], config["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model, config, Vocab(saved["vocab"]), saved


def corpus(config, vocab):
    """The train and validation tokens char_lm.py used (the same text, split and vocabulary)."""
    text = load_corpus(config["data"], config["max_chars"])
    if Vocab.from_text(text) != vocab:
        raise ValueError("continue_in_torch: the corpus on this machine is not the one the model was trained on")
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    """Check the exported model in torch, train it on with DDP; returns the results dict."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", nargs="?", default="runs/char_lm/model.pt", help="what char_lm.py --export-torch wrote")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--lr-scale", type=float, default=0.5, help="the learning rate as a fraction of tinyseq's")
    p.add_argument("--warmup", type=int, default=20, help="steps of linear learning-rate warm-up")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    p.add_argument("--out", default=None, help="directory for results.json (default: beside the export)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.log_every, args.warmup = min(args.steps, 10), 5, 5
    if args.steps < 1 or args.processes < 1 or args.warmup < 1 or args.log_every < 1:
        raise ValueError("continue_in_torch: --steps, --processes, --warmup and --log-every must be at least 1")
    if not pathlib.Path(args.path).exists():
        raise FileNotFoundError(f"continue_in_torch: no export at {args.path}; "
                                f"run: python examples/char_lm.py --export-torch {args.path}")
    out = pathlib.Path(args.out or pathlib.Path(args.path).parent)
    out.mkdir(parents=True, exist_ok=True)

    model, config, vocab, saved = load_export(args.path)
    _, val_tokens = corpus(config, vocab)
    start_bpc = validation_bpc(model, val_tokens)
    fresh = math.log2(len(vocab))
    print(f"loaded {args.path}: {config['cell']} {config['layers']}x{config['hidden']} trained "
          f"{saved['step']} steps in tinyseq")
    print(f"validation bpc: tinyseq {saved['val_bpc']:.4f}, the same weights in torch {start_bpc:.4f} "
          f"(a fresh model: about {fresh:.2f})")

    results_path = out / "continue_in_torch.json"
    print(f"training on for {args.steps} steps: DistributedDataParallel, gloo, {args.processes} processes")
    with common.Timer() as timer:
        mp.spawn(worker, args=(args.processes, free_port(), args, results_path), nprocs=args.processes)
    trained = json.loads(results_path.read_text())
    results = {"tinyseq_val_bpc": saved["val_bpc"], "torch_start_val_bpc": start_bpc,
               "torch_end_val_bpc": trained["val_bpc"], "first_train_bpc": trained["train_bpc"][0],
               "last_train_bpc": float(np.mean(trained["train_bpc"][-args.log_every:])),
               "steps": args.steps, "processes": args.processes, "seconds": timer.seconds}
    print(common.table(["", "validation bpc"], [["tinyseq, at export", saved["val_bpc"]],
                                                 ["torch, same weights", start_bpc],
                                                 [f"torch, after {args.steps} DDP steps", trained["val_bpc"]]]))
    common.write_json(results_path, {**results, "train_bpc": trained["train_bpc"]})
    return results


if __name__ == "__main__":
    main()
