#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
"""torch-moe.py - PyTorch's time for one DeepSeek MoE layer on a GPU.

The anchor of `moex-bench moe --backend hip` (tools/bench-gpu.c), run by it
as a subprocess with the shape it measured: the same layer as
Documentation/moe-kernels.rst describes (router with group-limited top-k,
routed experts w2(silu(w1 x) * w3 x), weighted sum, shared experts), bf16
weights and activations, f32 router, on random data. The routed experts go
through torch._grouped_mm (one grouped GEMM per projection over tokens
sorted by expert) where this torch has it, else a loop over the experts
that got tokens (also when its first call fails, which it then prints).
Timed with CUDA events: the median of --reps runs after
three warm-ups, the layer only (inputs already on the device).

Prints "torch_ms <median ms>", "torch_impl grouped_mm|loop" and
"torch_version <v>"; exits 1 when there is no torch or no GPU.
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--inter", type=int, required=True)
    ap.add_argument("--experts", type=int, required=True)
    ap.add_argument("--topk", type=int, required=True)
    ap.add_argument("--groups", type=int, default=0)
    ap.add_argument("--topk-groups", type=int, default=0)
    ap.add_argument("--shared", type=int, default=0)
    ap.add_argument("--scoring", choices=["sigmoid", "softmax"],
                    default="sigmoid")
    ap.add_argument("--route-scale", type=float, default=2.5)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--impl", choices=["auto", "grouped_mm", "loop"],
                    default="auto")
    a = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"no torch: {e}", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("torch sees no GPU", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    torch.manual_seed(0)
    E, D, I, K, T = a.experts, a.dim, a.inter, a.topk, a.batch
    bf = torch.bfloat16
    scale = 0.02
    gate = torch.randn(E, D, device=dev) * scale
    bias = torch.zeros(E, device=dev) if a.scoring == "sigmoid" else None
    # [E, D, I] and [E, I, D]: the layouts grouped_mm multiplies by
    w1 = (torch.randn(E, D, I, device=dev, dtype=bf) * scale)
    w3 = (torch.randn(E, D, I, device=dev, dtype=bf) * scale)
    w2 = (torch.randn(E, I, D, device=dev, dtype=bf) * scale)
    sw = a.shared * I
    if sw:
        s1 = torch.randn(D, sw, device=dev, dtype=bf) * scale
        s3 = torch.randn(D, sw, device=dev, dtype=bf) * scale
        s2 = torch.randn(sw, D, device=dev, dtype=bf) * scale
    x = torch.randn(T, D, device=dev, dtype=bf)

    grouped = hasattr(torch, "_grouped_mm") and a.impl != "loop"
    if a.impl == "grouped_mm" and not grouped:
        print("this torch has no _grouped_mm", file=sys.stderr)
        return 1

    def route(x):
        s = x.float() @ gate.t()
        s = s.sigmoid() if a.scoring == "sigmoid" else s.softmax(-1)
        orig = s
        if bias is not None:
            s = s + bias
        if a.groups > 1:
            g = s.view(T, a.groups, -1)
            gs = g.topk(2, -1)[0].sum(-1) if bias is not None \
                else g.amax(-1)
            keep = gs.topk(a.topk_groups, -1)[1]
            mask = torch.ones(T, a.groups, dtype=torch.bool, device=dev)
            mask.scatter_(1, keep, False)
            s = s.masked_fill(mask.repeat_interleave(E // a.groups, 1),
                              float("-inf"))
        idx = s.topk(K, -1)[1]
        w = orig.gather(1, idx)
        if a.scoring == "sigmoid":
            w = w / w.sum(-1, keepdim=True)
        return idx, w * a.route_scale

    def layer(x):
        idx, w = route(x)
        flat = idx.reshape(-1)
        order = flat.argsort(stable=True)
        tok = order // K
        xs = x[tok]
        counts = torch.bincount(flat, minlength=E)
        if grouped:
            offs = counts.cumsum(0).to(torch.int32)
            h = F.silu(torch._grouped_mm(xs, w1, offs=offs)) * \
                torch._grouped_mm(xs, w3, offs=offs)
            o = torch._grouped_mm(h, w2, offs=offs)
        else:
            o = torch.empty(T * K, D, device=dev, dtype=bf)
            start = 0
            for e, n in enumerate(counts.tolist()):
                if n:
                    xe = xs[start:start + n]
                    o[start:start + n] = \
                        (F.silu(xe @ w1[e]) * (xe @ w3[e])) @ w2[e]
                start += n
        out = torch.zeros(T * K, D, device=dev, dtype=torch.float32)
        out[order] = o.float()
        y = (out.view(T, K, D) * w.unsqueeze(-1)).sum(1)
        if sw:
            y = y + ((F.silu(x @ s1) * (x @ s3)) @ s2).float()
        return y

    with torch.no_grad():
        if grouped and a.impl == "auto":
            # a grouped_mm this GPU or torch refuses (strides, arch):
            # the loop, said on stdout, rather than no anchor at all
            try:
                layer(x)
                torch.cuda.synchronize()
            except RuntimeError as e:
                first = str(e).splitlines()[0] if str(e) \
                    else type(e).__name__
                print(f"torch_grouped_mm_failed {first}")
                grouped = False
        for _ in range(3):
            layer(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(a.reps):
            t0 = torch.cuda.Event(enable_timing=True)
            t1 = torch.cuda.Event(enable_timing=True)
            t0.record()
            layer(x)
            t1.record()
            t1.synchronize()
            times.append(t0.elapsed_time(t1))
    times.sort()
    print(f"torch_ms {times[len(times) // 2]:.6f}")
    print(f"torch_impl {'grouped_mm' if grouped else 'loop'}")
    print(f"torch_version {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
