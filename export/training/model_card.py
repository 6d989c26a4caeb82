"""Write the model card that ships next to a model's weights (``export/weights/<name>.md`` and ``.json``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from edge_sdk.runtime.fileio import atomic_write

#: Published Kodak curves (RGB PSNR at full resolution) that a card shows beside ours as fixed
#: references: CompressAI's results files for bmshj2018-hyperprior, the ELIC paper's table.
#: JPEG and WebP are never taken from here: Pillow versions differ, so cards measure them again.
PUBLISHED_KODAK = {
    "bmshj2018-hyperprior (CompressAI)": [(0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84),
                                          (0.669, 34.53), (0.939, 36.74)],
    "ELIC (2022, paper)": [(0.124, 29.11), (0.197, 30.70), (0.334, 32.78), (0.491, 34.58), (0.704, 36.49)],
}


def _table(summary: list[dict]) -> list[str]:
    lines = ["| decoded depth | bpp | PSNR (dB) | top-1 agreement with the teacher |", "|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['depth']:.0%} of levels | {row['bpp']:.3f} | {row['psnr']:.2f} | {row['agreement']:.1%} |")
    return lines


def _interpolate(points: list[tuple[float, float]], bpp: float) -> Optional[float]:
    from .train import psnr_at_bpp

    return psnr_at_bpp([{"bpp": b, "psnr": p} for b, p in points], bpp)


def _fmt(value: Optional[float], spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def dataset_line(dataset: dict, runs: Sequence[str] = ()) -> str:
    """What the training photos were, by origin, from a prepared dataset's ``dataset.json``;
    ``runs`` names the runs that trained on it (a recipe's stages may use different sets)."""
    counts = dataset["counts"]
    origins = Counter(r["origin"].split(":")[0] + (":" + r["origin"].split(":")[1] if r["origin"].startswith("git:") else "")
                      for r in dataset["images"] if r.get("split", "train") == "train")
    by_origin = ", ".join(f"{n} from {o}" for o, n in origins.most_common())
    short_side = dataset.get("options", {}).get("short_side", 0)
    scale = f"reduced to a {short_side}-px short side" if short_side else "JPEGs reduced 2× or more"
    used_by = f" of {', '.join(runs)}" if runs else ""
    return (f"Data{used_by}: `edge-sdk data prepare` — {counts['train_images']} training photos ({counts['train_megapixels']} MP, "
            f"{scale}, {counts['train_crops']} crop positions; {by_origin}), {counts['val_images']} held out. Licences: "
            f"{', '.join(dataset['licences'])} (per photo, with source, commit and path, in the dataset's `dataset.json`).")


def kodak_section(kodak: dict) -> list[str]:
    """``kodak``: {"photos", "ours": [{quality, bpp, psnr}], "jpeg"/"webp": [{quality, bpp, psnr}],
    "plot": file name or None}. Ours is the ideal code length (the published curves' convention);
    JPEG and WebP are whole files, measured in the same run."""
    lines = ["## Kodak at full resolution", "",
             f"{kodak['photos']} photos. Ours: bpp of the ideal code length of the rounded latents (what published "
             "learned-codec curves report; a real stream adds its framing, about 1 %), PSNR of the 8-bit "
             "reconstruction. JPEG and WebP: Pillow, whole files, measured in the same run.", "",
             "| quality | bpp | PSNR (dB) |", "|---|---|---|"]
    for row in kodak["ours"]:
        lines.append(f"| {row['quality']:g} | {row['bpp']:.3f} | {row['psnr']:.2f} |")
    curves = {"edge-sdk (these weights)": [(r["bpp"], r["psnr"]) for r in kodak["ours"]]}
    for fmt in ("webp", "jpeg"):
        if kodak.get(fmt):
            curves[f"{fmt.upper() if fmt == 'jpeg' else 'WebP'} (Pillow, this run)"] = [(r["bpp"], r["psnr"]) for r in kodak[fmt]]
    curves.update({name: list(pts) for name, pts in PUBLISHED_KODAK.items()})
    lines += ["", "| codec | PSNR at 0.25 bpp | PSNR at 0.5 bpp |", "|---|---|---|"]
    for name, pts in curves.items():
        lines.append(f"| {name} | {_fmt(_interpolate(pts, 0.25), '.2f')} | {_fmt(_interpolate(pts, 0.5), '.2f')} |")
    if kodak.get("plot"):
        lines += ["", f"![Kodak rate-distortion]({kodak['plot']})"]
    return lines + [""]


def evaluation_section(summary: dict, title: str) -> list[str]:
    """The ``edge-sdk eval`` summary (its results.json without per-image records)."""
    curves = summary["curves"]
    ours = curves["edge-sdk"]
    picks = sorted({0, len(ours) // 4, len(ours) // 2, 3 * len(ours) // 4, len(ours) - 1})
    has_accuracy = any(p.get("accuracy") is not None for p in ours)
    head = "| codec | setting | bpp | agreement |" + (" accuracy |" if has_accuracy else "") + " PSNR (dB) |"
    lines = [f"## {title}", "",
             f"`edge-sdk eval`, {summary['images']} photos at a {summary['short_side']}-px short side, the bundle "
             "through ONNX Runtime; bpp counts every byte of each file. Agreement: top-1 equals the teacher's on the "
             "original photo.", "", head, "|---|---|---|---|" + ("---|" if has_accuracy else "") + "---|"]

    def row(codec: str, p: dict) -> str:
        acc = f" {_fmt(p.get('accuracy'), '.1%')} |" if has_accuracy else ""
        return f"| {codec} | {p['setting']} | {p['bpp']:.3f} | {p['agreement']:.1%} |{acc} {p['psnr']:.2f} |"

    lines += [row("edge-sdk", ours[i]) for i in picks]
    # results.json's curve of the teacher on our decoded pictures (older results lack it)
    pixels = curves.get("edge-sdk pixels")
    if pixels and len(pixels) == len(ours):
        lines += [row("edge-sdk pixels (teacher on our pictures)", pixels[i]) for i in picks]
    for codec in ("webp", "jpeg"):
        for p in curves.get(codec, []):
            if 0.1 <= p["bpp"] <= 1.2:
                lines.append(row(codec, p))
    bd = summary.get("bd_rate_vs", {})
    if bd:
        lines += ["", "BD-rate of edge-sdk against each (negative: fewer bytes for the same value):", "",
                  "| against | agreement axis | PSNR axis |" + (" accuracy axis |" if has_accuracy else ""),
                  "|---|---|---|" + ("---|" if has_accuracy else "")]
        axes = ("agreement", "psnr") + (("accuracy",) if has_accuracy else ())
        for codec, entry in bd.items():
            cells = ["no common range" if entry.get(a) is None else f"{100 * entry[a]:+.1f} %" for a in axes]
            lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    teacher = summary.get("teacher") or {}
    if teacher.get("ceiling"):
        lines += ["", "The teacher's own stability on these photos (agreement of the best pixel codecs, whose top-1 "
                  "flips come from its near-ties): " + ", ".join(f"{k} {v:.1%}" for k, v in teacher["ceiling"].items())
                  + f"; median top-1 probability {teacher['median_confidence']:.2f}."]
    return lines + [""]


def write_model_card(path: str | Path, *, name: str, runs: list[dict], datasets: list[tuple[dict, list[str]]],
                     reports: list[dict],
                     notes: list[str], scale: str, kodak: Optional[dict] = None,
                     evaluation: Optional[dict] = None, evaluation_title: str = "Machine accuracy") -> None:
    """``runs``: one dict per training stage (stage, steps, batch, crop, seconds, device, command);
    ``reports``: ``report.level_report`` results, one per quality (may be empty); ``kodak``: see
    :func:`kodak_section`; ``evaluation``: an ``edge-sdk eval`` summary."""
    lines = [f"# {name}: model card", ""]
    lines += ["## Training", "", "| stage | steps | batch × crop | wall time | device | command |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['stage']} | {r['steps']} | {r['batch']} × {r['crop']}² | {r['seconds'] / 60:.0f} min | "
                     f"{r['device']} | `{r['command']}` |")
    lines += [""]
    for dataset, used_by in datasets:
        lines += [dataset_line(dataset, used_by), ""]
    if kodak:
        lines += kodak_section(kodak)
    if evaluation:
        lines += evaluation_section(evaluation, evaluation_title)
    if reports:
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
    figures = {"runs": runs, "reports": compact}
    if kodak:
        figures["kodak"] = kodak
    if evaluation:
        figures["evaluation"] = {k: v for k, v in evaluation.items() if k != "per_image"}
    for target, text in ((path, "\n".join(lines)), (path.with_suffix(".json"), json.dumps(figures, indent=1) + "\n")):
        atomic_write(target, text)


def plot_kodak(kodak: dict, path: str | Path) -> None:
    """Kodak PSNR against bpp: these weights, Pillow's JPEG and WebP of the same run, the published curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_sdk.runtime.fileio import atomic_file

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(*zip(*[(r["bpp"], r["psnr"]) for r in kodak["ours"]]), "o-", lw=2, label="edge-sdk (these weights)")
    for fmt, label in (("webp", "WebP (Pillow, this run)"), ("jpeg", "JPEG (Pillow, this run)")):
        if kodak.get(fmt):
            pts = sorted((r["bpp"], r["psnr"]) for r in kodak[fmt])
            ax.plot(*zip(*pts), "s--", ms=3, label=label)
    for name, pts in PUBLISHED_KODAK.items():
        ax.plot(*zip(*pts), ":", marker=".", label=f"{name}, published")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(22, 37)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"Kodak, {kodak['photos']} photos at full resolution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
