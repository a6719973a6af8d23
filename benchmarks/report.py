"""Regenerate the README's results section and the documentation's results pages from
``benchmarks/results/`` (the ``*.json`` result files and the ``*.md`` tables the benchmark
scripts write beside them).

    python -m benchmarks.report                            # rewrites the block between the RESULTS markers
    python -m benchmarks.report --docs docs/results        # rewrites the documentation's results pages
    python -m benchmarks.report --docs docs/results --check  # exit 1 if they differ from what it would write

Nothing in that block or those pages is typed by hand: every figure comes from a result file
written by a benchmark script, next to the command that produced it. The pages name no machine
paths: a folder of the machine that ran a benchmark is shown relative to it (:func:`relativise`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from dhmrec_pyg import files as dfiles

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- RESULTS:BEGIN (python -m benchmarks.report) -->", "<!-- RESULTS:END -->"

#: The paper's Table 1 rows and the reference toolbox's TikTok figures (from ../shared/data/README.md
#: and the issue tracker), for the "reference" column.
REFERENCE = {
    ("baby", "bpr"): (0.0575, 0.0249, "paper"),
    ("baby", "lightgcn"): (0.0754, 0.0328, "paper"),
    ("sports", "lightgcn"): (0.0864, 0.0387, "paper"),
    ("sports", "bpr"): (0.0653, 0.0298, "paper"),
    ("tiktok", "lightgcn"): (0.0922, 0.0419, "reference toolbox, same split"),
    ("tiktok", "freedom"): (0.0883, 0.0387, "reference toolbox, same split"),
    ("tiktok", "lgmrec"): (0.0558, 0.0266, "reference toolbox, same split"),
}


#: Marks a result trained before MMRec's negative pool became the default (``train.negatives``).
NEGATIVES_NOTE = "negatives from every item"


def accuracy_table() -> list[str]:
    """One row per ``benchmarks.reproduce`` result file."""
    rows = ["| dataset | model | selected (validation) | R@10 | R@20 | N@10 | N@20 | reference R@20 / N@20 | best epoch | s/epoch | command |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((HERE / "results").glob("*.json")):
        report = json.loads(path.read_text())
        if "selected_test" not in report or path.stem.endswith(("_acc", "_acc_tuned")):
            continue  # the comparison table shows those
        t = report["selected_test"]
        ref = REFERENCE.get((report["dataset"], report["model"]))
        ref_cell = f"{ref[0]:.4f} / {ref[1]:.4f} ({ref[2]})" if ref else ""
        chosen = [f"{k}={v}" for k, v in report["best_params"].items() if k != "seed"]
        fixed = [s for s in re.findall(r"--set (\S+)", report["command"]) if not s.startswith("knn_cache_dir")]
        params = ", ".join(chosen + [f for f in fixed if f.split("=")[0] not in report["best_params"]])
        if "note" in report:
            params += f" ({report['note'].split(';')[0]})"
        if report.get("negatives", "all") != "trained":
            params += f" [{NEGATIVES_NOTE}]"
        rows.append(
            f"| {report['dataset']} | {report['model']} | {params} | {t['recall@10']:.4f} | {t['recall@20']:.4f} "
            f"| {t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} | {ref_cell} | {report['selected_best_epoch']} "
            f"| {report['selected_seconds_per_epoch']:.1f} | `{report['command']}` |"
        )
    return rows


#: DHMRec's ablation switches and the names of the paper's Table 2.
ABLATIONS = {
    "disentangle=false": "w/o DIS",
    "fusion=mean": "w/o AF",
    "attention=standard": "w/o PNF",
    "kl_align=false": "w/o KL",
    "item_graphs=false": "w/o II",
}


#: Options an ablation or full-model row may set without being a probe of another setting.
_ROW_KEYS = {"ln_gain", "reg_weight", "alpha_mm", "knn_cache_dir", "epochs"}


def ablation_table() -> list[str]:
    """DHMRec against its ablations per dataset, like the paper's Table 2.

    The full model is the result file whose command sets no ablation switch and
    uses the default ``alpha_mm`` 0.8 and ``reg_weight`` 1e-2.
    """
    rows: dict = {}
    for path in sorted((HERE / "results").glob("*.json")):
        report = json.loads(path.read_text())
        if report.get("model") != "dhmrec" or "selected_test" not in report:
            continue
        sets = set(re.findall(r"--set (\S+)", report["command"]))
        params = {**{k: str(v) for k, v in report["best_params"].items()},
                  **dict(x.split("=", 1) for x in sets)}
        gain = report.get("ln_gain", params.get("ln_gain", "unit"))
        switch = [ABLATIONS[x] for x in sets if x in ABLATIONS]
        # Probes of other settings (learning rate, loss weights, ...) are neither row.
        changed = {x.split("=", 1)[0] for x in sets if x not in ABLATIONS} - _ROW_KEYS
        if changed:
            continue
        if switch:
            name = switch[0]
        elif params.get("reg_weight") in ("1e-2", "0.01") and params.get("alpha_mm", "0.8") == "0.8":
            name = "DHMRec"
        else:
            continue
        pool = report.get("negatives", "all")
        rows.setdefault((report["dataset"], gain, pool), {})[name] = report["selected_test"]
    lines: list[str] = []
    for (dataset, gain, pool), by_name in sorted(rows.items()):
        if len(by_name) < 2:
            continue
        when = "" if pool == "trained" else f", {NEGATIVES_NOTE} (`negatives=all`, the default when they ran)"
        lines += ["", f"DHMRec ablations on {dataset}, layer-norm gain `ln_gain={gain}`{when} (one seed, test at "
                  "the best validation epoch; cf. the paper's Table 2):",
                  "", "| variant | R@20 | N@20 |", "|---|---|---|"]
        for name in ["DHMRec", *ABLATIONS.values()]:
            if name in by_name:
                t = by_name[name]
                lines.append(f"| {name} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} |")
    return lines


def propagation_table() -> list[str]:
    """The propagation benchmark, if it has been run."""
    path = HERE / "results" / "propagation.json"
    if not path.is_file():
        return []
    r = json.loads(path.read_text())
    lines = ["", f"Propagation layer on the real Baby graph, 2 layers forward + backward (`{r['command']}`):", "",
             "| path | ms | time / reference |", "|---|---|---|"]
    for name, sec in sorted(r["seconds_two_layer_forward_backward"].items(), key=lambda kv: kv[1]):
        lines.append(f"| {name} | {sec * 1000:.1f} | {r['ratio_to_reference'][name]:.2f} |")
    lines.append(f"\nBPR sampler, one epoch of Baby triplets: {r['sampler_seconds_per_epoch'] * 1000:.0f} ms.")
    return lines


def repo_details(name: str) -> str:
    """How the README points at ``results/<name>.md``: its path in the repository."""
    return f"`benchmarks/results/{name}.md`"


def embedded(name: str, title: str, last: bool = False, details: Callable[[str], str] = repo_details) -> list[str]:
    """The first (``last``: the last) Markdown table of ``results/<name>.md`` with its command
    line, under ``title``; ``details(name)`` is how the text points at the whole file."""
    path = HERE / "results" / f"{name}.md"
    if not path.is_file():
        return []
    text = path.read_text().splitlines()
    command = next((line for line in text if line.startswith("Command:")), "")
    starts = [i for i, line in enumerate(text) if line.startswith("|") and (i == 0 or not text[i - 1].startswith("|"))]
    start = starts[-1] if last else starts[0]
    end = next((i for i in range(start, len(text)) if not text[i].startswith("|")), len(text))
    machine = next((line for line in text if line.startswith("Machine:")), "")
    return ["", f"**{title}** ({command[len('Command: '):] if command else name}; details in "
            f"{details(name)}):", "", *text[start:end], "", machine]


INTRO = ("Test metrics at the epoch and hyper-parameters selected on validation Recall@20 "
         "(machine and versions in each `benchmarks/results/*.md`). The s/epoch columns of the accuracy "
         "tables were measured on shared machines (a 2-core CPU machine running up to six jobs, or one "
         "GPU training ten runs at once): compare speeds only within one speed benchmark file.")


def accuracy_sections(details: Callable[[str], str] = repo_details) -> list[str]:
    """The model comparisons (``results/accuracy_<dataset>.md``)."""
    body: list[str] = []
    for path in sorted((HERE / "results").glob("accuracy_*.md")):
        body += embedded(path.stem, f"Comparison on {path.stem.split('_', 1)[1]}", details=details)
    return body


def dhmrec_sections(details: Callable[[str], str] = repo_details) -> list[str]:
    """The probes that selected DHMRec's default readings, its curves and its ablations."""
    return [
        *embedded("tiktok_dhmrec_readings", "DHMRec: the probes that selected the default readings "
                  "(TikTok, seed 0; docs/readings.md)", details=details),
        *embedded("tiktok_dhmrec_nobias_seeds", "DHMRec: the default (the layer norm before (19) without "
                  "its bias) against the layer norm with its bias, over the selection's seeds 0-2 and over seeds 0-4 "
                  "(TikTok; the per-run rows are in the file; docs/readings.md)", last=True, details=details),
        *embedded("tiktok_curve_jitter", "How far the best validation point sits above the level the curve "
                  "holds (TikTok; near best: mean validation R@20 within 10 epochs of the best one; step sd: "
                  "spread of the epoch-to-epoch changes there)", details=details),
        *embedded("tiktok_ema_probes", "The level under the jumps: DHMRec and FREEDOM with a moving average "
                  "of the weights (`ema_decay`), and two fixed-scale readings of (18) (TikTok; docs/readings.md)",
                  details=details),
        *embedded("tiktok_dhmrec_ablations_nobias", "DHMRec ablations under the default (TikTok; the "
                  "per-variant means over seeds 0-2, at the best point and at the near-best level, are in the file; "
                  "docs/readings.md)", last=True, details=details),
        *embedded("tiktok_dhmrec_ablations_alpha12", "DHMRec ablations under the previous default (the layer "
                  "norm with its bias; TikTok, seed 0, and w/o KL on seeds 1-2 and w/o DIS on seed 1 with the "
                  "full model's runs)", details=details),
    ]


def speed_sections(details: Callable[[str], str] = repo_details) -> list[str]:
    """Training speed, DHMRec's step part by part, operator counts, the KNN build and the million-item scale."""
    body = embedded("speed", "Training and evaluation speed at the paper's scales", details=details)
    body += embedded("speed_cuda", "The same at Baby scale on a GPU", details=details)
    body += embedded("speed_kl_three", "Full epochs at TikTok, Baby and Sports: DHMRec with the exact and the "
                     "sampled KL against FREEDOM", details=details)
    for path in sorted((HERE / "results").glob("breakdown_*.md")):
        body += embedded(path.stem, f"Where a DHMRec training step goes ({path.stem.split('_', 1)[1]})",
                         details=details)
    for path in sorted((HERE / "results").glob("opcount_*.md")):
        body += embedded(path.stem, f"Aten operators per training step on {path.stem.split('_', 1)[1]}",
                         details=details)
    body += embedded("knn", "Item-item KNN graph build", details=details)
    body += embedded("knn_100k_hnsw_ivf", "The two approximate KNN indexes at 100,000 items (why `method=\"auto\"` "
                     "picks IVF above `EXACT_MAX_ITEMS`)", details=details)
    for dim in (384, 512):
        body += embedded(f"knn_million_{dim}", f"KNN graph of a million {dim}-d items (IVF, full build)",
                         details=details)
    body += embedded("scale_million", "A million items: FREEDOM, LightGCN and DHMRec", details=details)
    body += embedded("scale_million_dhmrec_no_recompute", "DHMRec at a million items without recompute",
                     details=details)
    for value in ("false", "true"):
        body += embedded(f"scale_250k_recompute_{value}", f"DHMRec at 250,000 items, recompute={value}",
                         details=details)
    return body


def eval_noise_sections(details: Callable[[str], str] = repo_details) -> list[str]:
    """LGMRec's runs evaluated with the evaluation-time noise of its public code."""
    body: list[str] = []
    for path in sorted((HERE / "results").glob("eval_noise_*.md")):
        body += embedded(path.stem, "LGMRec evaluated with its public code's evaluation-time Gumbel noise",
                         details=details)
    return body


RUNS_HEADING = "**Every recorded run** (each `benchmarks/results/<dataset>_<model>[_tag].md` has the grid):"


def tune_sections(details: Callable[[str], str] = repo_details) -> list[str]:
    """The equal-budget comparisons of tuned models (``results/tune_<dataset>.md``)."""
    body: list[str] = []
    for path in sorted((HERE / "results").glob("tune_*.md")):
        body += embedded(path.stem, f"Tuned with an equal budget on {path.stem.split('_', 1)[1]}", details=details)
    return body


#: Where the README sends a reader for every other result.
MORE = ("DHMRec's readings and ablations, the speed and scaling tables and every recorded run are the "
        "documentation's results pages (`docs/results/`, generated from `benchmarks/results/*.json`).")


def readme_body() -> list[str]:
    """The lines between the README's RESULTS markers: the model comparisons, short."""
    body = ["", INTRO, ""] + accuracy_sections() + tune_sections() + ["", MORE, ""]
    return [relativise(line) for line in body]


def write_readme() -> int:
    """Rewrite the results block of README.md."""
    readme = HERE.parent / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{readme}: no results markers", file=sys.stderr)
        return 1
    body = readme_body()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    dfiles.write_text(readme, head + BEGIN + "\n" + "\n".join(body) + "\n" + END + tail)
    print("\n".join(body))
    return 0


# ---------------------------------------------------------------- documentation pages

#: Top folders of the machines the benchmarks ran on: a path under one of them is shown
#: relative to the folder a run was started from (``/work/exp/runs/x`` -> ``runs/x``,
#: ``/work/shared/data`` -> ``data``, ``/tmp/runs`` -> ``runs``).
_MACHINE_PREFIX = re.compile(r"(?<![\w.~-])/(?:work/[^/\s`|,;:)'\"]+|tmp|root|home/[^/\s`|,;:)'\"]+)(?:/|(?![^/\s`|,;:)'\"]))")

#: The first line of every generated page.
GENERATED = "<!-- Generated by `python -m benchmarks.report --docs docs/results` from benchmarks/results/: do not edit. -->"

#: Figures of DHMRec on TikTok (in ``docs/figures``), shown on the DHMRec page.
FIGURES = [
    ("Learning curves", "tiktok_dhmrec_curves.png"),
    ("t-SNE of common, specific and ID item embeddings", "tiktok_dhmrec_tsne_disentangled.png"),
    ("t-SNE of fused multimodal and ID item embeddings", "tiktok_dhmrec_tsne_fused.png"),
]


def relativise(text: str) -> str:
    """``text`` without the machine paths of the benchmarks' hosts (see :data:`_MACHINE_PREFIX`)."""
    return _MACHINE_PREFIX.sub("", text)


def page_details(name: str) -> str:
    """How a page directly under the results folder links the whole result file."""
    return f"[`{name}.md`](files/{name}.md)"


def _page(title: str, lead: List[str], body: List[str]) -> str:
    return relativise("\n".join([GENERATED, "", f"# {title}", "", *lead, *body]).rstrip() + "\n")


def _result_files() -> List[Path]:
    return sorted((HERE / "results").glob("*.md"))


def docs_pages() -> Dict[str, str]:
    """The documentation's results pages, by path relative to the results folder."""
    d = page_details
    pages = {
        "index.md": _page("Results", [
            INTRO, "",
            "Every table here is generated by `python -m benchmarks.report --docs docs/results` from the "
            "result files in `benchmarks/results/`, which the benchmark scripts write with the command, the "
            "machine and the library versions; each table names the file it comes from "
            "([all result files](all.md)). A test checks that the committed pages are what the generator "
            "writes. DHMRec's probes and ablations are on [DHMRec on TikTok](dhmrec.md), timings on "
            "[Speed](speed.md).", "",
            "Rerun a benchmark (the real data in a folder given with `--data-root`; each script prints "
            "where it writes), then regenerate:", "",
            "```bash",
            "python -m benchmarks.accuracy --dataset tiktok --models dhmrec,freedom,lgmrec,lightgcn,bpr   # grids + 3 seeds",
            "python -m benchmarks.reproduce --dataset baby --model lightgcn --grid num_layers=2,3   # one model's grid",
            "python -m benchmarks.speed --datasets baby,sports,clothing --models dhmrec,freedom,lgmrec,lightgcn,bpr --repeats 3",
            "python -m benchmarks.paired --name cmp RUN_A RUN_B   # runs compared user by user",
            "python -m benchmarks.report && python -m benchmarks.report --docs docs/results",
            "```",
        ], accuracy_sections(d) + eval_noise_sections(d) + ["", RUNS_HEADING.replace(
            "each `benchmarks/results/<dataset>_<model>[_tag].md`", "each [result file](all.md)"), ""]
            + accuracy_table()),
        "dhmrec.md": _page("DHMRec on TikTok: readings, probes, ablations", [
            "The measurements behind DHMRec's default configuration ([How the paper is read](../readings.md) "
            "says what each reading is and why it was chosen)."], dhmrec_sections(d) + ablation_table() + [
            "", "Learning curves and t-SNE maps of an earlier single-seed TikTok run "
            "(`alpha_mm=0.8, reg_weight=1e-2`):", ""] + [f"![{alt}](../figures/{name})" for alt, name in FIGURES]),
        "speed.md": _page("Speed", [
            "Training speed at the paper's scales, DHMRec's step part by part, operators per step, the "
            "propagation layer, the KNN build and multi-process training. How to make a step faster: "
            "[Speed options](../guides/speed.md) and [Scaling out](../guides/scaling.md)."],
            speed_sections(d) + propagation_table()
            + embedded("distributed", "Multi-process (DDP) training on the demo data", details=d)
            + embedded("distributed_tiktok", "1 against 2 processes on TikTok", details=d)),
    }
    listing = ["| file | title |", "|---|---|"]
    for path in _result_files():
        text = path.read_text()
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), path.stem)
        listing.append(f"| [`{path.name}`](files/{path.name}) | {title.replace('|', '/')} |")
        pages[f"files/{path.name}"] = relativise(GENERATED + "\n\n" + text.rstrip() + "\n")
    pages["all.md"] = _page("All result files", [
        "Every Markdown file of `benchmarks/results/`, as the benchmark script that ran wrote it, with "
        "the paths of the machine it ran on cut to the part under its working folder; the JSON file of the same name "
        "holds what the script recorded.", ""], listing)
    return pages


def write_docs(folder: Path, check: bool = False) -> int:
    """Write :func:`docs_pages` under ``folder`` (and remove result pages no file backs any more);
    with ``check``, write nothing and return 1 if the folder differs from what would be written."""
    pages = docs_pages()
    stale = [p for p in sorted((folder / "files").glob("*.md")) if f"files/{p.name}" not in pages]
    differ = [name for name, text in pages.items()
              if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]
    if check:
        for name in differ + [f"files/{p.name}" for p in stale]:
            print(f"{folder / name}: out of date (python -m benchmarks.report --docs {folder})", file=sys.stderr)
        return 1 if differ or stale else 0
    for name in differ:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        dfiles.write_text(folder / name, pages[name])
    for path in stale:
        path.unlink()
    print(f"{folder}: {len(pages)} pages, {len(differ)} rewritten, {len(stale)} removed")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Rewrite the README's results block, or (``--docs``) the documentation's results pages."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, metavar="FOLDER",
                        help="write the documentation's results pages into FOLDER instead of the README")
    parser.add_argument("--check", action="store_true",
                        help="with --docs: write nothing, exit 1 if FOLDER is not what would be written")
    args = parser.parse_args(argv)
    if args.check and args.docs is None:
        parser.error("--check needs --docs FOLDER")
    return write_readme() if args.docs is None else write_docs(args.docs, args.check)


if __name__ == "__main__":
    sys.exit(main())
