"""Reference point for the train step's speed: a PyTorch nanoGPT-style model of the same shape as
`scaling.family.shape_for_width(256, n_layers=4, n_heads=4)` (pre-norm, fused QKV, SDPA causal
attention, SwiGLU, tied embeddings, no biases, AdamW), timed on the same batch size.

Not a project dependency: run it from a venv that has torch (`pip install torch==2.13.0`):
    python benchmarks/torch_nanogpt.py [--d-model 256 --layers 4 --seq 256 --batch 16 --steps 20]
It prints ms/step and tokens/s; compare with `scaling bench --d-model 256 --layers 4`.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.up, self.down = nn.Linear(d, 2 * ff, bias=False), nn.Linear(ff, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        gate, up = self.up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class GPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-6)

    def forward(self, idx, targets):
        x = self.emb(idx)
        for blk in self.blocks:
            x = blk(x)
        logits = self.norm(x) @ self.emb.weight.T
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=704)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    torch.set_flush_denormal(True)  # as XLA does on CPU; denormal gradients made d128 38x slower
    torch.manual_seed(0)
    model = GPT(256, a.d_model, a.layers, a.heads, a.ff)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    step_model = torch.compile(model) if a.compile else model
    x = torch.randint(0, 256, (a.batch, a.seq))

    def step():
        loss = step_model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    n = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} params={n} "
          f"{dt * 1e3:.1f} ms/step {a.batch * a.seq / dt:.0f} tokens/s")


if __name__ == "__main__":
    main()
