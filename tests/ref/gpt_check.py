"""Checks mforge's GPT against PyTorch on the same weights and batches.
Usage: /usr/bin/python3 gpt_check.py DIR   (DIR holds init.h5 and c_out.h5 from tests/test_gpt_ref)
Compares logits, loss, every parameter gradient, and the losses of 10 AdamW steps;
prints one row per quantity and exits 1 if any normalised error exceeds its bound."""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import GPT, load_mforge_params, lr_at  # noqa: E402

BOUND = 1e-4


def nerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    d = sys.argv[1]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = h5py.File(os.path.join(d, "c_out.h5"), "r")
    a = dict(out.attrs)
    L, NH, C, V, maxT = (int(a[k]) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"))
    model = GPT(L, NH, C, V, maxT)
    with h5py.File(os.path.join(d, "init.h5"), "r") as ck:
        load_mforge_params(model, ck)
    idx = torch.from_numpy(out["idx"][...].astype(np.int64))
    tgt = torch.from_numpy(out["targets"][...].astype(np.int64))

    worst = 0.0
    rows = []
    logits, loss = model(idx, tgt)
    rows.append(("logits", nerr(out["logits"][...], logits.detach().numpy())))
    rows.append(("loss", nerr(out["loss"][...], loss.detach().numpy().reshape(1))))
    loss.backward()
    for name, p in model.named_for_mforge().items():
        rows.append(("grad " + name, nerr(out["grads/" + name][...], p.grad.numpy())))
    model.zero_grad(set_to_none=True)

    # 10 AdamW steps with mforge's schedule and clipping, on the batches C used
    lr, min_lr, warm, steps = float(a["lr"]), float(a["min_lr"]), int(a["warmup"]), int(a["steps"])
    wd, clip = float(a["weight_decay"]), float(a["grad_clip"])
    opt = torch.optim.AdamW(model.optim_groups(wd), lr=lr, betas=(float(a["beta1"]), float(a["beta2"])),
                            eps=float(a["eps"]), foreach=False)
    losses = []
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s + 1, lr, min_lr, warm, steps)
        opt.zero_grad(set_to_none=True)
        _, l = model(torch.from_numpy(out["step_idx"][s].astype(np.int64)),
                     torch.from_numpy(out["step_tgt"][s].astype(np.int64)))
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(l.item())
    rows.append(("10 AdamW step losses", nerr(out["step_loss"][...], np.array(losses))))
    for name, p in model.named_for_mforge().items():
        a_, b_ = out["final/" + name][...], p.detach().numpy()
        if name.endswith("attn.c_attn.bias"):
            # The key bias has an exactly-zero gradient (it shifts every score of a row by
            # the same amount), so both sides hold rounding noise that Adam scales up to
            # +-lr steps: compare the query and value parts only.
            a_, b_ = np.concatenate([a_[:C], a_[2 * C:]]), np.concatenate([b_[:C], b_[2 * C:]])
        rows.append(("params after 10 steps " + name, nerr(a_, b_)))

    bad = 0
    for name, e in rows:
        worst = max(worst, e)
        flag = "ok" if e <= BOUND else "FAIL"
        bad += flag != "ok"
        if flag != "ok" or not name.startswith(("grad h.", "params after")):
            print(f"{name:60s} {e:10.3e} {flag}")
    print(f"gpt vs torch: {len(rows)} tensors compared, worst normalised error {worst:.3e} "
          f"(bound {BOUND:g}), {bad} failed")
    print("C losses:     " + " ".join(f"{x:.6f}" for x in out["step_loss"][...]))
    print("torch losses: " + " ".join(f"{x:.6f}" for x in losses))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
