"""Training tokens/s of a Llama-shaped model in PyTorch, for comparison with
`mycel bench train` on the same machine in the same minutes.

The model is written out here in plain PyTorch (RMSNorm, rotary embedding,
causal attention, SwiGLU), random weights, random tokens; one optimizer
step is forward, backward and AdamW over a batch of sequences.

    python3 tests/torch/train_bench.py --threads 2 [--shape stories15M] [--steps 3]
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F

SHAPES = {
    # dim, layers, heads, kv heads, hidden, vocab
    "stories15M": (288, 6, 6, 6, 768, 32000),
    "stories110M": (768, 12, 12, 12, 2048, 32000),
}


class Block(torch.nn.Module):
    def __init__(self, dim, heads, kv_heads, hidden):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.attn_norm = torch.nn.Parameter(torch.ones(dim))
        self.ffn_norm = torch.nn.Parameter(torch.ones(dim))
        self.wq = torch.nn.Linear(dim, dim, bias=False)
        self.wk = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = torch.nn.Linear(dim, dim, bias=False)
        self.w1 = torch.nn.Linear(dim, hidden, bias=False)
        self.w2 = torch.nn.Linear(hidden, dim, bias=False)
        self.w3 = torch.nn.Linear(dim, hidden, bias=False)

    @staticmethod
    def norm(x, w, eps=1e-5):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(self, x, cos, sin):
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.norm(x, self.attn_norm)
        q = self.wq(h).view(b, t, self.heads, self.hd)
        k = self.wk(h).view(b, t, self.kv_heads, self.hd)
        v = self.wv(h).view(b, t, self.kv_heads, self.hd)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.wo(o)
        h = self.norm(x, self.ffn_norm)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(torch.nn.Module):
    def __init__(self, dim, layers, heads, kv_heads, hidden, vocab):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList(Block(dim, heads, kv_heads, hidden) for _ in range(layers))
        self.norm = torch.nn.Parameter(torch.ones(dim))
        self.hd = dim // heads

    def forward(self, ids):
        t = ids.shape[1]
        pos = torch.arange(t, dtype=torch.float32)
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        ang = pos[:, None] * inv[None, :]
        cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        x = Block.norm(x, self.norm)
        return x @ self.emb.weight.t()  # the classifier shares the embedding


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="stories15M", choices=sorted(SHAPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    dim, layers, heads, kvh, hidden, vocab = SHAPES[a.shape]
    m = Model(dim, layers, heads, kvh, hidden, vocab)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(vocab, (a.batch, a.seq + 1))

    def step():
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    el = time.perf_counter() - t0
    tokens = a.batch * a.seq * a.steps
    print(f"pytorch {torch.__version__} train {a.shape} full f32, batch {a.batch}x{a.seq}, {a.threads} threads: "
          f"{tokens / el:.0f} tok/s ({el / a.steps:.2f} s/step)")


if __name__ == "__main__":
    main()
