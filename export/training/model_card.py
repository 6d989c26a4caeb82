"""Write the model card that ships next to a model's weights (``export/weights/<name>.md`` and ``.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from edge_sdk.runtime.fileio import atomic_write


def _table(summary: list[dict]) -> list[str]:
    lines = ["| decoded depth | bpp | PSNR (dB) | top-1 agreement with the teacher |", "|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['depth']:.0%} of levels | {row['bpp']:.3f} | {row['psnr']:.2f} | {row['agreement']:.1%} |")
    return lines


def write_model_card(path: str | Path, *, name: str, runs: list[dict], dataset: dict, reports: list[dict],
                     notes: list[str], scale: str) -> None:
    """``runs``: one dict per training stage (stage, steps, batch, crop, seconds, device, command);
    ``reports``: ``report.level_report`` results, one per quality."""
    lines = [f"# {name}: model card", ""]
    lines += ["## Training", "", "| stage | steps | batch × crop | wall time | device | command |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['stage']} | {r['steps']} | {r['batch']} × {r['crop']}² | {r['seconds'] / 60:.0f} min | "
                     f"{r['device']} | `{r['command']}` |")
    counts = dataset["counts"]
    lines += ["", f"Data: `edge-sdk data prepare` defaults — {counts['train_images']} training photos "
              f"({counts['train_megapixels']} MP, {counts['train_crops']} crop positions), {counts['val_images']} held out. "
              f"Licences: {', '.join(dataset['licences'])} (per photo in the dataset's `dataset.json`).", ""]
    lines += ["## Held-out photos, through the real trit-plane stream", ""]
    for rep in reports:
        lines += [f"Quality {rep['quality']:g}, {rep['photos']} held-out photos ({scale}); bpp counts every byte of the "
                  "stream prefix (header, z, chunk table). Agreement: top-1 of the compressed-domain classifier equals "
                  "EfficientNet-Lite0's top-1 on the original photo.", ""]
        lines += _table(rep["summary"]) + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Raw figures: `" + Path(path).with_suffix(".json").name + "`.", ""]
    path = Path(path)
    compact = [{**rep, "per_photo": {n: rows[-1] for n, rows in rep["per_photo"].items()}} for rep in reports]
    for target, text in ((path, "\n".join(lines)),
                         (path.with_suffix(".json"), json.dumps({"runs": runs, "reports": compact}, indent=1) + "\n")):
        atomic_write(target, text)
