"""GPT-2 from a Hugging Face checkpoint -> compare with transformers -> greedy tokens -> engine.

Reads a model directory as `save_pretrained` writes it (config.json and model.safetensors or a
sharded model.safetensors.index.json), builds the netdef port from it with Hugging Face's names
unchanged, compares every module with the transformers model, generates tokens with the KV cache
through the reference runner (checked against transformers' own greedy generate), and builds one
float16 engine for prefill and decode with dynamic batch and sequence profiles.

Nothing is downloaded: without --model a small GPT-2 with random weights is written first.

Run: python examples/gpt2_generate.py [--model gpt2-dir] [--tokens 16] [--engine gpt2.engine]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

import netdef
from netdef.generation import step_network
from netdef.models.gpt2 import GPT2LMHeadModel


def write_random_checkpoint(path: str) -> None:
    """A small GPT-2 (2 layers, 64 wide) with random weights, saved as Hugging Face saves one."""
    import transformers

    config = transformers.GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)  # random weights that make tokens depend on every layer
    model.save_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a Hugging Face GPT-2 directory; default: a small random one")
    p.add_argument("--tokens", type=int, default=16, help="new tokens to generate (default 16)")
    p.add_argument("--engine", default="gpt2_step_fp16.engine", help="where to save the engine")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or os.path.join(tmp, "gpt2-small-random")
        if args.model is None:
            write_random_checkpoint(path)
        t0 = time.perf_counter()
        port = GPT2LMHeadModel.from_pretrained(path)
        print(f"netdef port loaded from {path} in {time.perf_counter() - t0:.2f} s")
        original = transformers.GPT2LMHeadModel.from_pretrained(path).eval()

    ids = torch.randint(1, port.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # the second prompt is shorter: left padding, as for generation
    ids[1, :3] = 0

    report = netdef.compare(original, port, (ids[:1, 3:],))
    print(report.summary())

    t0 = time.perf_counter()
    tokens = netdef.generate(port, ids, max_new_tokens=args.tokens, attention_mask=mask)
    seconds = time.perf_counter() - t0
    expected = original.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=args.tokens,
                                 pad_token_id=0)
    same = torch.equal(tokens, expected)
    print(f"greedy tokens (reference runner, {seconds:.2f} s):")
    for row in tokens[:, ids.shape[1]:].tolist():
        print("  ", row)
    print(f"identical to transformers' generate: {same}")

    t0 = time.perf_counter()
    net = step_network(port, batch=(1, 2, 8), seq=(1, 8, 64), cache=128, dtype="float16")
    plan = netdef.build(net, progress=False)
    netdef.save_engine(plan, args.engine)
    print(f"engine (float16, batch 1..8, sequence 1..64, cache 128): {args.engine}, {len(plan) / 1e6:.1f} MB, "
          f"built in {time.perf_counter() - t0:.1f} s")
    return 0 if report.ok and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
