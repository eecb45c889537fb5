"""PyTorch side of benchmarks/gpt_train: the same GPT (tests/ref/gpt_torch.py), the same
initial weights and batches (init.h5 / batches.h5 written by the C side), AdamW, fp32,
on the CPU or (--device cuda) the GPU, where --precision bf16 is autocast with fp32
master weights, the AdamW is fused and --compile 1 adds torch.compile.
Prints one JSON line: per-step times, first/last loss, peak RSS.
--probe B1,B2,...: instead, tries two steps at each micro-batch in turn (the first rows of the
first batch) and prints {"fits": B} for the first that runs out of no memory (0: none)."""
import argparse
import gc
import json
import os
import resource
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "ref"))
from gpt_torch import GPT, load_mforge_params  # noqa: E402


def out_of_memory(e):
    return isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(e)


def probe(model, opt, amp, idx, tgt, Bs, dev):
    """the first micro-batch in Bs whose training step (twice: the optimizer state appears
    in the first) does not run out of device memory; 0 if none"""
    for B in Bs:
        try:
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                with amp:
                    _, loss = model(idx[0, :B], tgt[0, :B])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return B
        except RuntimeError as e:
            if not out_of_memory(e):
                raise
        loss = None
        opt.zero_grad(set_to_none=True)
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--compile", type=int, default=0)
    ap.add_argument("--tf32", type=int, default=0)
    ap.add_argument("--probe", default="")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.device == "cuda":  # fp32 matmuls as ours: TF32 only when both sides use it
        torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
        torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    torch.set_num_threads(a.threads)
    with h5py.File(os.path.join(a.dir, "batches.h5"), "r") as f:
        at = dict(f.attrs)
        idx = torch.from_numpy(f["idx"][...].astype(np.int64))
        tgt = torch.from_numpy(f["tgt"][...].astype(np.int64))
    L, NH, C, V, maxT = (int(at[k]) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"))
    model = GPT(L, NH, C, V, maxT)
    with h5py.File(os.path.join(a.dir, "init.h5"), "r") as f:
        load_mforge_params(model, f)
    model.to(dev)
    idx, tgt = idx.to(dev), tgt.to(dev)
    kw = {"fused": True} if a.device == "cuda" else {}
    opt = torch.optim.AdamW(model.optim_groups(0.1), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, **kw)
    step_model = torch.compile(model) if a.compile else model
    amp = torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16")
    if a.probe:
        print(json.dumps({"fits": probe(model, opt, amp, idx, tgt, [int(b) for b in a.probe.split(",")], dev)}))
        return
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with amp:
            _, loss = step_model(idx[s % idx.shape[0]], tgt[s % tgt.shape[0]])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if a.device == "cuda":
            torch.cuda.synchronize()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dev_kb = torch.cuda.max_memory_allocated() // 1024 if a.device == "cuda" else 0
    print(json.dumps({"ms": [t * 1e3 for t in times], "loss_first": losses[0], "loss_last": losses[-1],
                      "peak_rss_kb": rss, "dev_kb": dev_kb}, separators=(",", ":")))


if __name__ == "__main__":
    main()
