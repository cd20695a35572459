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
import pathlib
import socket

import numpy as np

import common


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
        raise common.UsageError("--steps, --processes, --warmup and --log-every must be at least 1")
    if not pathlib.Path(args.path).is_file():
        raise common.UsageError(f"path {args.path}: no export there; "
                                f"run: python examples/char_lm.py --export-torch {args.path}")
    common.require_torch("continue_in_torch.py")
    out = pathlib.Path(args.out or pathlib.Path(args.path).parent)
    common.make_out(out)
    if args.quick:
        print(common.SMOKE)

    import torch.multiprocessing as mp

    from torch_char_lm import corpus, load_export, validation_bpc, worker

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
    common.summary(args, ["", "validation bpc"], [["tinyseq, at export", saved["val_bpc"]],
                                                   ["torch, same weights", start_bpc],
                                                   [f"torch, after {args.steps} DDP steps", trained["val_bpc"]]])
    common.write_json(results_path, {**results, "train_bpc": trained["train_bpc"]})
    return results


if __name__ == "__main__":
    common.run(main)
