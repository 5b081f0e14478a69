"""Writes a nanoGPT ckpt.pt of the GPT-2 124M shape with Debian's torch, as
nanoGPT's train.py does after training from scratch: transformer.* weights in
nn.Linear (out, in) layout, lm_head tied to wte, the vocabulary padded to
50304 rows, the causal-mask buffers, an AdamW state, model_args, iter_num
and config.

    python3 bench/nanogpt_ckpt.py OUT_DIR     (writes OUT_DIR/out/ckpt.pt)
"""
import os
import sys

import torch

L, H, C, T, V = 12, 12, 768, 1024, 50304


def main():
    out = os.path.join(sys.argv[1], "out")
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(124)

    def n(*shape, sd=0.02, mean=0.0):
        return torch.randn(*shape, generator=g) * sd + mean

    sd = {"transformer.wte.weight": n(V, C), "transformer.wpe.weight": n(T, C, sd=0.01)}
    for i in range(L):
        p = "transformer.h.%d." % i
        sd.update({p + "ln_1.weight": n(C, sd=0.05, mean=1.0), p + "ln_1.bias": n(C),
                   p + "attn.c_attn.weight": n(3 * C, C), p + "attn.c_attn.bias": n(3 * C),
                   p + "attn.c_proj.weight": n(C, C), p + "attn.c_proj.bias": n(C),
                   p + "ln_2.weight": n(C, sd=0.05, mean=1.0), p + "ln_2.bias": n(C),
                   p + "mlp.c_fc.weight": n(4 * C, C), p + "mlp.c_fc.bias": n(4 * C),
                   p + "mlp.c_proj.weight": n(C, 4 * C), p + "mlp.c_proj.bias": n(C),
                   p + "attn.bias": torch.tril(torch.ones(T, T)).view(1, 1, T, T)})
    sd["transformer.ln_f.weight"] = n(C, sd=0.05, mean=1.0)
    sd["transformer.ln_f.bias"] = n(C)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    params = [v for k, v in sd.items() if not k.endswith(".attn.bias") and k != "lm_head.weight"]
    opt = {"state": {i: {"step": torch.tensor(5000.0), "exp_avg": torch.zeros_like(p),
                         "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params)},
           "param_groups": [{"lr": 6e-4, "params": list(range(len(params)))}]}
    torch.save({"model": sd, "optimizer": opt,
                "model_args": dict(n_layer=L, n_head=H, n_embd=C, block_size=T, bias=True, vocab_size=V,
                                   dropout=0.0),
                "iter_num": 5000, "best_val_loss": torch.tensor(3.1),
                "config": {"dataset": "openwebtext", "batch_size": 12}}, os.path.join(out, "ckpt.pt"))


if __name__ == "__main__":
    main()
