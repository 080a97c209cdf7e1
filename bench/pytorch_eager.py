"""PyTorch (Python, eager) side of bench/serve_vs_pytorch.sh.

Builds the census MMoE the way PyTorch reference code (torch-rechub's MMoE) is
written: one nn.Embedding per field, one Linear+ReLU expert module each, a
gate Linear and a tower per task. Loads the weights and featurized candidates
that bench_serve_vs_eager exported from a trained mtrank model, checks the
outputs match mtrank's logits, and prints p50/p99 ms per request of N
candidates under torch.inference_mode().

    /usr/bin/python3 bench/pytorch_eager.py EXPORT_FILE THREADS
"""
import sys
import time

import torch
from torch import nn


class MMoE(nn.Module):
    def __init__(self, vocab_sizes, dim, num_dense, experts, hidden, tasks, tower_hidden):
        super().__init__()
        width = len(vocab_sizes) * dim + num_dense
        self.embeddings = nn.ModuleList(nn.Embedding(v, dim) for v in vocab_sizes)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(width, hidden), nn.ReLU()) for _ in range(experts))
        self.gates = nn.ModuleList(nn.Linear(width, experts) for _ in range(tasks))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, tower_hidden), nn.ReLU(), nn.Linear(tower_hidden, 1)) for _ in range(tasks))

    def forward(self, categorical, dense):
        x = torch.cat([emb(categorical[:, f]) for f, emb in enumerate(self.embeddings)] + [dense], dim=1)
        expert_out = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, H]
        logits = []
        for gate, tower in zip(self.gates, self.towers):
            g = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # [B, E, 1]
            logits.append(tower((g * expert_out).sum(dim=1)))
        return torch.cat(logits, dim=1)


def main():
    export, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    d = torch.load(export)
    fields = sorted(int(k[len("embedding"):-len(".weight")]) for k in d if k.startswith("embedding"))
    vocab = [d[f"embedding{f}.weight"].shape[0] for f in fields]
    dim = d["embedding0.weight"].shape[1]
    experts = sum(1 for k in d if k.startswith("expert") and k.endswith("0.weight"))
    hidden = d["expert0.0.weight"].shape[0]
    tasks = sum(1 for k in d if k.startswith("gate") and k.endswith(".weight"))
    tower_hidden = d["tower0.0.weight"].shape[0]
    cat, dense, expected = d["input.categorical"], d["input.dense"], d["expected.logits"]
    model = MMoE(vocab, dim, dense.shape[1], experts, hidden, tasks, tower_hidden).eval()
    state = {}
    for k, v in d.items():
        if k.startswith("embedding"):
            state[f"embeddings.{k[len('embedding'):]}"] = v
        elif k.startswith("expert"):
            state[f"experts.{k[len('expert'):]}"] = v
        elif k.startswith("gate"):
            state[f"gates.{k[len('gate'):]}"] = v
        elif k.startswith("tower"):
            state[f"towers.{k[len('tower'):]}"] = v
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        got = model(cat, dense)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            sys.exit(f"PyTorch outputs differ from mtrank's: max diff {(got - expected).abs().max().item():.3g}")
        rows = cat.shape[0]
        if rows <= 1000:
            sys.exit(f"the export holds {rows} candidates; timing needs more than 1,000")
        print(f"{'candidates':>10} {'p50 ms':>10} {'p99 ms':>10}")
        for n in (50, 200, 1000):
            ms = []
            for r in range(220):
                s = (r * 131) % (rows - n)
                c, x = cat[s:s + n], dense[s:s + n]
                t0 = time.perf_counter()
                model(c, x)
                if r >= 20:
                    ms.append((time.perf_counter() - t0) * 1e3)
            ms.sort()
            print(f"{n:>10} {ms[len(ms) // 2]:>10.3f} {ms[len(ms) * 99 // 100]:>10.3f}")


if __name__ == "__main__":
    main()
