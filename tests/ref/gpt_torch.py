"""GPT-2 in PyTorch with the same math and parameter names as mforge's GPT (Hugging Face
GPT-2 state-dict layout: Conv1D weights are [in, out]). Used by the reference test
(tests/ref/gpt_check.py) and the training benchmark (benchmarks/gpt_train)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn_weight = nn.Parameter(torch.zeros(C, 3 * C))
        self.c_attn_bias = nn.Parameter(torch.zeros(3 * C))
        self.attn_proj_weight = nn.Parameter(torch.zeros(C, C))
        self.attn_proj_bias = nn.Parameter(torch.zeros(C))
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc_weight = nn.Parameter(torch.zeros(C, 4 * C))
        self.c_fc_bias = nn.Parameter(torch.zeros(4 * C))
        self.mlp_proj_weight = nn.Parameter(torch.zeros(4 * C, C))
        self.mlp_proj_bias = nn.Parameter(torch.zeros(C))

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.NH
        qkv = torch.addmm(self.c_attn_bias, self.ln_1(x).view(B * T, C), self.c_attn_weight)
        q, k, v = qkv.view(B, T, 3, self.NH, hs).permute(2, 0, 3, 1, 4)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            a = att @ v
        a = a.transpose(1, 2).reshape(B * T, C)
        x = x + torch.addmm(self.attn_proj_bias, a, self.attn_proj_weight).view(B, T, C)
        h = torch.addmm(self.c_fc_bias, self.ln_2(x).view(B * T, C), self.c_fc_weight)
        h = F.gelu(h, approximate="tanh")
        return x + torch.addmm(self.mlp_proj_bias, h, self.mlp_proj_weight).view(B, T, C)


class GPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, vocab_size, block_size):
        super().__init__()
        self.V = vocab_size
        self.wte = nn.Parameter(torch.zeros(vocab_size, n_embd))
        self.wpe = nn.Parameter(torch.zeros(block_size, n_embd))
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.wte[idx] + self.wpe[:T]
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.t()  # tied weights
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, self.V), targets.view(-1), ignore_index=-1)
        return logits, loss

    # mforge / Hugging Face names -> our attributes
    def named_for_mforge(self):
        out = {"wte.weight": self.wte, "wpe.weight": self.wpe,
               "ln_f.weight": self.ln_f.weight, "ln_f.bias": self.ln_f.bias}
        for i, b in enumerate(self.h):
            p = f"h.{i}."
            out.update({
                p + "ln_1.weight": b.ln_1.weight, p + "ln_1.bias": b.ln_1.bias,
                p + "attn.c_attn.weight": b.c_attn_weight, p + "attn.c_attn.bias": b.c_attn_bias,
                p + "attn.c_proj.weight": b.attn_proj_weight, p + "attn.c_proj.bias": b.attn_proj_bias,
                p + "ln_2.weight": b.ln_2.weight, p + "ln_2.bias": b.ln_2.bias,
                p + "mlp.c_fc.weight": b.c_fc_weight, p + "mlp.c_fc.bias": b.c_fc_bias,
                p + "mlp.c_proj.weight": b.mlp_proj_weight, p + "mlp.c_proj.bias": b.mlp_proj_bias,
            })
        return out

    def init_gpt2(self, seed, n_layer):
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_for_mforge().items():
            with torch.no_grad():
                if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                    p.fill_(1.0)
                elif p.dim() == 1:
                    p.zero_()
                else:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                    p.normal_(0.0, std, generator=g)

    def optim_groups(self, weight_decay):
        """Decay on 2-D weights (embeddings and matmuls), none on norms and biases (as mforge)."""
        decay = [p for n, p in self.named_for_mforge().items() if p.dim() >= 2]
        rest = [p for n, p in self.named_for_mforge().items() if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def load_mforge_params(model, h5file):
    """Copies /params/<name> of an mforge checkpoint (h5py File) into the model."""
    with torch.no_grad():
        for name, p in model.named_for_mforge().items():
            p.copy_(torch.from_numpy(h5file["params/" + name][...]))


def lr_at(step, lr, min_lr, warmup, steps):
    """mforge's schedule: linear warmup, then cosine to min_lr (core/optim.c)."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    span = steps - warmup
    p = min(1.0, (step - warmup) / span) if span > 0 else 1.0
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))
