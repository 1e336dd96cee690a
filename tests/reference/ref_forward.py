#!/usr/bin/python3
"""Independent reference forward pass in plain PyTorch (float32 compute).

Run BY HAND to (re)make the fixtures under tests/reference/fixtures/; CI
never runs torch. For each case it calls baton-mkmodel to write a small
model, reads config.json and the safetensors file with its own parser,
runs the prompt through a straightforward full-sequence forward (no KV
cache), and stores the logits of chosen prompt positions plus 32 greedy
tokens (each from a full recompute). The C test
(tests/unit/engine/test_reference.c) regenerates the same model from the
spec stored in the fixture and compares.

    apt-get install -y python3-torch
    /usr/bin/python3 tests/reference/ref_forward.py build-x/tools/baton-mkmodel
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = [1, 17, 101, 5, 200, 33, 250, 7, 64, 128, 3, 99]
GREEDY_STEPS = 32
CHECK_POSITIONS = [0, len(PROMPT) - 1]

# name -> (arch, extra baton-mkmodel flags)
CASES = {
    "llama": ("llama", ["--rope-llama3", "--max-pos", "256", "--seed", "7"]),
    "qwen2": ("qwen2", ["--seed", "8"]),
    "mistral": ("mistral", ["--sliding-window", "8", "--seed", "9"]),
    "mixtral": ("mixtral", ["--experts", "4", "--experts-used", "2",
                            "--seed", "10"]),
    "qwen3_moe": ("qwen3_moe", ["--experts", "4", "--experts-used", "2",
                                "--moe-ffn", "48", "--head-dim", "32",
                                "--seed", "11"]),
    "qwen2_moe": ("qwen2_moe", ["--experts", "4", "--experts-used", "2",
                                "--moe-ffn", "48", "--shared-ffn", "80",
                                "--seed", "12"]),
}
BASE_FLAGS = ["--hidden", "64", "--layers", "2", "--heads", "4",
              "--kv-heads", "2", "--ffn", "96", "--vocab", "256",
              "--no-tokenizer"]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        buf = bytearray(data[base + b:base + e])
        x = torch.frombuffer(buf, dtype=dtypes[t["dtype"]]).reshape(t["shape"])
        out[name] = x.to(torch.float32)
    return out


def rmsnorm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def inv_freqs(cfg, hd):
    theta = cfg.get("rope_theta", 10000.0)
    out = []
    rs = cfg.get("rope_scaling")
    for i in range(hd // 2):
        f = 1.0 / math.pow(theta, (2.0 * i) / hd)
        if rs and rs.get("rope_type", rs.get("type")) == "llama3":
            orig = rs["original_max_position_embeddings"]
            lo, hi, fac = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
            wl = 2 * math.pi / f
            if wl > orig / lo:
                f = f / fac
            elif wl >= orig / hi:
                sm = (orig / wl - lo) / (hi - lo)
                f = (1 - sm) * f / fac + sm * f
        out.append(f)
    return torch.tensor(out, dtype=torch.float64).to(torch.float32)


def rope(x, pos, inv):
    # x: [T, heads, hd]; HF rotate_half convention
    ang = pos.to(torch.float32)[:, None] * inv[None, :]
    cos = torch.cos(ang.double()).float()[:, None, :]
    sin = torch.sin(ang.double()).float()[:, None, :]
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def ffn(W, p, x, names=("gate_proj", "up_proj", "down_proj")):
    g = x @ W[f"{p}.{names[0]}.weight"].T
    u = x @ W[f"{p}.{names[1]}.weight"].T
    return (torch.nn.functional.silu(g) * u) @ W[f"{p}.{names[2]}.weight"].T


def moe(cfg, W, l, x):
    arch = cfg["architectures"][0]
    mixtral = arch == "MixtralForCausalLM"
    blk = f"model.layers.{l}.block_sparse_moe" if mixtral else f"model.layers.{l}.mlp"
    k = cfg["num_experts_per_tok"]
    probs = torch.softmax(x @ W[f"{blk}.gate.weight"].T, dim=-1)
    w, sel = torch.topk(probs, k, dim=-1)
    if mixtral or cfg.get("norm_topk_prob", False):
        w = w / w.sum(-1, keepdim=True)
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = int(sel[t, j])
            names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
            out[t] += w[t, j] * ffn(W, f"{blk}.experts.{e}", x[t:t + 1], names)[0]
    if arch == "Qwen2MoeForCausalLM":
        sg = torch.sigmoid(x @ W[f"{blk}.shared_expert_gate.weight"].T)
        out = out + sg * ffn(W, f"{blk}.shared_expert", x)
    return out


def is_moe_layer(cfg, l):
    arch = cfg["architectures"][0]
    if arch == "MixtralForCausalLM":
        return True
    if arch not in ("Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM"):
        return False
    step = cfg.get("decoder_sparse_step", 1)
    return l not in cfg.get("mlp_only_layers", []) and (l + 1) % step == 0


def forward(cfg, W, tokens):
    arch = cfg["architectures"][0]
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    inv = inv_freqs(cfg, hd)
    T = len(tokens)
    pos = torch.arange(T)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    window = cfg.get("sliding_window") if arch in ("MistralForCausalLM", "MixtralForCausalLM") else None
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if window:
        mask &= (pos[:, None] - pos[None, :]) < window
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        h = rmsnorm(x, W[f"{p}.input_layernorm.weight"], eps)
        q = h @ W[f"{p}.self_attn.q_proj.weight"].T
        k = h @ W[f"{p}.self_attn.k_proj.weight"].T
        v = h @ W[f"{p}.self_attn.v_proj.weight"].T
        if f"{p}.self_attn.q_proj.bias" in W:
            q = q + W[f"{p}.self_attn.q_proj.bias"]
            k = k + W[f"{p}.self_attn.k_proj.bias"]
            v = v + W[f"{p}.self_attn.v_proj.bias"]
        q = q.view(T, nh, hd)
        k = k.view(T, nkv, hd)
        v = v.view(T, nkv, hd)
        if f"{p}.self_attn.q_norm.weight" in W:
            q = rmsnorm(q, W[f"{p}.self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, W[f"{p}.self_attn.k_norm.weight"], eps)
        q = rope(q, pos, inv)
        k = rope(k, pos, inv)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        s = s.masked_fill(~mask[None], float("-inf"))
        a = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), v)
        x = x + a.reshape(T, nh * hd) @ W[f"{p}.self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[f"{p}.post_attention_layernorm.weight"], eps)
        x = x + (moe(cfg, W, l, h) if is_moe_layer(cfg, l) else ffn(W, f"{p}.mlp", h))
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def make_case(mkmodel, name, arch, flags, dtype):
    with tempfile.TemporaryDirectory() as d:
        argv = [mkmodel, "--arch", arch, "--dtype", dtype, "--out", d] + BASE_FLAGS + flags
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        cfg = json.load(open(os.path.join(d, "config.json")))
        W = load_safetensors(os.path.join(d, "model.safetensors"))
    with torch.no_grad():
        logits = forward(cfg, W, PROMPT)
        toks = list(PROMPT)
        greedy = []
        for _ in range(GREEDY_STEPS):
            nxt = int(torch.argmax(forward(cfg, W, toks)[-1]))
            greedy.append(nxt)
            toks.append(nxt)
    rows = {str(p): struct.pack(f"<{logits.shape[1]}f", *logits[p].tolist()).hex()
            for p in CHECK_POSITIONS}
    fx = {
        "mkmodel_args": ["--arch", arch, "--dtype", dtype] + BASE_FLAGS + flags,
        "prompt": PROMPT,
        "vocab": logits.shape[1],
        "logits_f32le_hex": rows,
        "greedy": greedy,
        "torch": torch.__version__,
    }
    out = os.path.join(HERE, "fixtures", f"{name}_{dtype}.json")
    with open(out, "w") as f:
        json.dump(fx, f, indent=1)
        f.write("\n")
    print("wrote", out, "greedy", greedy[:8], "...")


def main():
    mkmodel = sys.argv[1]
    names = sys.argv[2:] or list(CASES)
    for name in names:
        arch, flags = CASES[name]
        for dtype in ("f32", "bf16"):
            make_case(mkmodel, name, arch, flags, dtype)


if __name__ == "__main__":
    main()
