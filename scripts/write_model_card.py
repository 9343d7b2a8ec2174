"""Write the model card of a shipped checkpoint from measured benchmark JSONs.

    python scripts/write_model_card.py --ckpt ausm/weights/ausm-tiny --run runs/tiny-v1 \
        --semi semi.json --unsup unsup.json --step 1500 --train-time "..." > /dev/null
"""
import argparse
import json
from pathlib import Path


def pct(v):
    return f"{100 * v:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--semi", required=True)
    ap.add_argument("--unsup", required=True)
    ap.add_argument("--step", required=True)
    ap.add_argument("--train-time", required=True)
    ap.add_argument("--docs", default="docs/MODEL_CARD.md")
    a = ap.parse_args()
    semi = json.loads(Path(a.semi).read_text())
    uns = json.loads(Path(a.unsup).read_text())
    cfg = json.loads(Path(a.ckpt, "config.json").read_text())
    row = lambda r: " | ".join(pct(r[k]) for k in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"))  # noqa: E731
    per = "\n".join(f"| {k} | {pct(v)} |" for k, v in sorted(semi["per_object"].items()))
    text = f"""# ausm-tiny — model card

The default model of `ausm segment`, `ausm benchmark` and `ausm.AUSM.from_pretrained()`
(`ausm/weights/ausm-tiny/`: `model.safetensors` + `config.json`, {Path(a.ckpt, 'model.safetensors').stat().st_size / 2**20:.1f} MiB).
Trained by this project from scratch (no pretrained backbone can be downloaded here).

## Model

- Preset `ausm-tiny`: `transformers` ResNet backbone (basic blocks, widths 32/64/128/192, depths
  1/1/2/1, random init) + FPN; D = {cfg['hidden_dim']}; History Compressor {cfg['compressor_layers']} layers (Mamba d_state
  {cfg['mamba_d_state']}); History Decoder {cfg['history_decoder_layers']} layers; Pixel Decoder {cfg['pixel_decoder_layers']} layers; {cfg['num_queries']} detection queries;
  {cfg['num_ids']} ID vectors; class-agnostic head only. 1.80 M parameters.
- Inference input: shorter side {cfg['input_short_side']} px (longer side ≤ {cfg['input_max_long_side']}), rounded to multiples of 32
  (854×480 → 416×256).

## Training

- Data: DAVIS-2016 **train** (30 sequences, 240p, `../shared/data/davis2016`), nothing else.
- Recipe (`configs/tiny_davis2016.json`): 4-frame clips, random stride 1–3, random zoom 1.0–1.3, crop
  224×384, flip, reversed clips half of the time; batch 2 clips; AdamW lr 2e-4 (warm-up 50 steps,
  ×0.1 at 85 %), weight decay 0.05, gradient clipping 1.0; {a.step} steps; loss with 2,048 importance-sampled
  points, deep supervision. Teacher forcing: 70 % of the clips give the object as a first-frame prompt,
  the others switch it in at a random frame (10 % detection only), so the detection path is trained too
  (docs/DESIGN.md: DAVIS-2016's single primary object treated as exhaustive).
- Hardware and time: 1 thread of a 2-core AMD EPYC VM (CPU only, torch 2.13.0), {a.train_time}.
- Command: `ausm train configs/tiny_davis2016.json` (then copy `runs/tiny-v1/last` to
  `ausm/weights/ausm-tiny`). The shipped run was made with the code of commit 65a150f plus the
  start-token fix of cb24af9; the current trainer samples points with border padding and seeds every
  step separately, so a rerun is statistically similar, not bit-identical.

## Scores — DAVIS-2016 val, the 18 sequences in `../shared/data/davis2016` at 480p

Official DAVIS semantics (`ausm eval davis`, identical to `vos-benchmark` on real predictions; docs/EVAL.md).

| protocol | J&F | J-Mean | J-Recall | J-Decay | F-Mean | F-Recall | F-Decay |
|---|---|---|---|---|---|---|---|
| semi-supervised (first-frame mask) | {row(semi)} |
| unsupervised (no prompt) | {row(uns)} |
| copy the first-frame mask (semi) | 25.2 | 27.3 | | | 23.1 | | |

Reproduce:

```bash
ausm benchmark davis2016 --root ../shared/data/davis2016                     # semi-supervised
ausm benchmark davis2016 --root ../shared/data/davis2016 --task unsupervised
```

For orientation (full 20 sequences, ImageNet-pretrained, GPU-trained): OSVOS 80.2, XMem 92.0 J&F.
This model is far below them: it has seen 30 videos and no pretraining. Its training curve is in
`docs/img/tiny_training.png` (scripts/plot_training.py; val points are the semi-supervised score on 6
of the 18 sequences).

Per-sequence J (semi-supervised):

| sequence/object | J |
|---|---|
{per}

## Limits

Small, trained on one small dataset: it follows the given object roughly (J {pct(semi['J-Mean'])}) and
drifts on fast motion, thin structures and large scale changes; its unprompted detections are
class-agnostic and noisy. It exists so that every command works out of the box and so that the
project measures itself honestly; the paper-size presets (`ausm-swin-t`, `ausm-swin-b`) and the
three-stage recipe (docs/TRAINING.md) are the route to real accuracy.
"""
    Path(a.ckpt, "README.md").write_text(text)
    Path(a.docs).write_text(text)
    print(text[:300])


if __name__ == "__main__":
    main()
