"""Several training seeds: each cell's mean and spread across detectors fine-tuned with different
seeds (``fusedet finetune --seeds N``).

A bootstrap interval (fusedet.detection_report) says how much a number moves with the choice of
test images; it says nothing of training noise: the same data and settings with another seed give
another detector and other APs. `summarize_seeds` takes the reports of N >= 2 detectors per model
(one per seed, all evaluated on the same split) and gives, per source and column, the mean across
seeds and the sample standard deviation

    std = sqrt( sum_k (x_k - mean)^2 / (N - 1) )        (numpy.std with ddof=1)

of AP@0.5, AP@[.5:.95] and AP_S / AP_M / AP_L (per class and mAP), of every source's difference to
the baseline row (taken seed by seed on the same images, the baseline resolved on the mean table as
``ReportSettings.baseline`` says), and of every group's table (``--group-by``). A cell undefined in
every seed (no ground truth, class not covered) stays undefined; a cell defined in some seeds only
is undefined too, and a note says so.

Files (`SeedSummary.write`): ``table.{csv,md,tex,json}`` (the main metric, ``mean ± std``; the CSV
has a ``COLUMN std`` column after each), ``table_ap50_95.*`` or ``table_ap50.*`` (the other metric),
``table_by_size.*``, ``delta_vs_baseline.csv``, ``ap_per_class.png`` (error bars: ± 1 std), and with
groups ``table_by_group.{json,md}``. Each seed's own report (with its bootstrap intervals) stays in
its own folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusedet.datasets.atomic import write_text_atomic
from fusedet.detection_report import ALL_METRICS, SHORT, SIZE_METRICS, TITLES, DetectionReport, resolve_baseline
from fusedet.detection_table import DetectionTable
from fusedet.errors import InputError
from fusedet.tables import ResultTable

STD_DEFINITION = "sample standard deviation across seeds (ddof=1: squared deviations divided by N - 1)"


def seed_folder(seed: int) -> str:
    """The folder (inside the run's output folder) of one seed's training and report: ``seed_K``."""
    return f"seed_{int(seed)}"


@dataclass(frozen=True)
class SeedStats:
    """One table across seeds: per source and column (classes then 'mAP') the mean, the standard
    deviation (ddof=1) and every seed's value, in seed order; None where undefined."""

    mean: dict[str, dict[str, float | None]]
    std: dict[str, dict[str, float | None]]
    values: dict[str, dict[str, list[float | None]]]
    partial: list[str] = field(default_factory=list)  # "source/column" cells defined in some seeds only


def seed_stats(per_seed: Sequence[Mapping[str, np.ndarray]], columns: Sequence[str]) -> SeedStats:
    """Mean and sample standard deviation (ddof=1) across seeds of per-source value arrays.

    `per_seed`: one mapping per seed, source -> (len(columns),) values (NaN: undefined), at least two
    seeds, the same sources in each. A cell is None unless every seed defines it."""
    if len(per_seed) < 2:
        raise InputError(f"a spread across seeds needs at least 2 seeds (got {len(per_seed)})")
    mean: dict[str, dict[str, float | None]] = {}
    std: dict[str, dict[str, float | None]] = {}
    values: dict[str, dict[str, list[float | None]]] = {}
    partial: list[str] = []
    for source in per_seed[0]:
        stack = np.stack([np.asarray(p[source], dtype=np.float64) for p in per_seed])  # (N, columns)
        defined = ~np.isnan(stack)
        every = defined.all(axis=0)
        safe = np.where(defined, stack, 0.0)
        m = safe.mean(axis=0)
        s = safe.std(axis=0, ddof=1)
        mean[source] = {c: float(m[j]) if every[j] else None for j, c in enumerate(columns)}
        std[source] = {c: float(s[j]) if every[j] else None for j, c in enumerate(columns)}
        values[source] = {c: [None if np.isnan(v) else float(v) for v in stack[:, j]] for j, c in enumerate(columns)}
        partial += [f"{source}/{c}" for j, c in enumerate(columns) if defined[:, j].any() and not every[j]]
    return SeedStats(mean, std, values, partial)


@dataclass
class SeedSummary:
    """The mean ± std report of several seeds (see the module docstring); `write(out)` writes it."""

    seeds: list[int]
    classes: list[str]
    sources: list[str]
    metric: str
    subject: str
    images: int
    stats: dict[str, SeedStats]  # metric -> table across seeds
    baseline: str | None
    deltas: dict[str, SeedStats]  # metric -> differences to the baseline (baseline row left out)
    groups: dict[str, tuple[int, dict[str, SeedStats]]]  # group -> (images, metric -> table)
    folders: dict[int, str]
    not_covered: dict[str, list[str]] = field(default_factory=dict)
    not_covered_reasons: dict[str, str] = field(default_factory=dict)
    no_ground_truth: list[str] = field(default_factory=list)
    group_by: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.classes, "mAP"]

    @property
    def rows(self) -> dict[str, dict[str, float | None]]:
        """Mean AP@0.5 across seeds per source and column."""
        return self.stats["ap50"].mean

    @property
    def std(self) -> dict[str, dict[str, float | None]]:
        """Standard deviation (ddof=1) of AP@0.5 across seeds per source and column."""
        return self.stats["ap50"].std

    # --- tables ----------------------------------------------------------------------------------

    def std_note(self) -> str:
        return (f"± : {STD_DEFINITION}, over {len(self.seeds)} detectors per model trained with seeds "
                f"{', '.join(map(str, self.seeds))}: training noise. Each seed's own table, with bootstrap intervals "
                f"over the test images, is in {', '.join(self.folders[k] + '/' for k in self.seeds)}.")

    def metric_table(self, metric: str, stats: SeedStats | None = None, title: str | None = None) -> DetectionTable:
        """The mean ± std table of `metric` (a key of fusedet.detection_report.TITLES); `stats`: another
        image set's (a group's), default the whole split's."""
        stats = stats or self.stats[metric]
        intervals = {s: {c: (m - sd, m + sd) for c in self.columns if (m := stats.mean[s][c]) is not None
                         and (sd := stats.std[s][c]) is not None} for s in self.sources}
        return DetectionTable(
            classes=list(self.classes),
            rows={s: dict(stats.mean[s]) for s in self.sources},
            not_covered={s: list(c) for s, c in self.not_covered.items()},
            not_covered_reasons=dict(self.not_covered_reasons),
            no_ground_truth=list(self.no_ground_truth),
            title=self._title(metric) if title is None else title,
            intervals=intervals,
            ci_style="pm",
            interval_note=self.std_note(),
        )

    def _title(self, metric: str) -> str:
        where = f" on {self.subject}" if self.subject else ""
        return f"{TITLES[metric]}{where}, mean ± std over {len(self.seeds)} seeds"

    def delta_table(self, metric: str | None = None) -> ResultTable | None:
        """Each source's difference to the baseline (AP points): mean ± std across seeds."""
        metric = metric or self.metric
        stats = self.deltas.get(metric)
        if stats is None or not stats.mean:
            return None
        return ResultTable(
            columns=self.columns,
            rows={s: dict(r) for s, r in stats.mean.items()},
            title=f"Difference to {self.baseline} ({SHORT[metric]}, AP points), mean ± std over {len(self.seeds)} seeds",
            row_header="Source",
            digits=1,
            intervals={s: {c: (m - sd, m + sd) for c in self.columns if (m := stats.mean[s][c]) is not None
                           and (sd := stats.std[s][c]) is not None} for s in stats.mean},
            signed=True,
            ranked=False,
        )

    def group_summary(self) -> ResultTable:
        """Main-metric mAP per source (rows) and group (columns): mean ± std across seeds."""
        heads = {g: f"{g} ({n})" for g, (n, _) in self.groups.items()}
        rows = {s: {heads[g]: st[self.metric].mean[s]["mAP"] for g, (_, st) in self.groups.items()} for s in self.sources}
        intervals = {s: {heads[g]: (st[self.metric].mean[s]["mAP"] - st[self.metric].std[s]["mAP"],
                                    st[self.metric].mean[s]["mAP"] + st[self.metric].std[s]["mAP"])
                         for g, (_, st) in self.groups.items() if st[self.metric].std[s]["mAP"] is not None}
                     for s in self.sources}
        spec = Path(self.group_by).name if self.group_by else "group"
        return ResultTable(columns=list(heads.values()), rows=rows, row_header="Source", digits=1, intervals=intervals,
                           title=f"m{SHORT[self.metric]} (%) by {spec}, mean ± std over {len(self.seeds)} seeds "
                                 "(images per group in parentheses)")

    def other_metric(self) -> str:
        return "ap50_95" if self.metric == "ap50" else "ap50"

    # --- renderers -------------------------------------------------------------------------------

    def to_markdown(self, metric: str | None = None) -> str:
        """The mean ± std table of `metric` (default the main one), its differences, its notes."""
        metric = metric or self.metric
        table = self.metric_table(metric)
        text = table.result_table().to_markdown()
        delta = self.delta_table(metric)
        if delta is not None:
            text += "\n" + delta.to_markdown()
        notes = table.notes() + self.notes
        return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")

    def to_latex(self, metric: str | None = None) -> str:
        metric = metric or self.metric
        table = self.metric_table(metric)
        text = table.to_latex()
        delta = self.delta_table(metric)
        return text + ("\n" + delta.to_latex() if delta is not None else "")

    def to_csv(self, metric: str | None = None) -> str:
        """Source, then per column its mean and its std (``COLUMN std``)."""
        return self._stacked_csv([self.stats[metric or self.metric]])

    def _stacked_csv(self, tables: Sequence[SeedStats], key: str | None = None, names: Sequence[str] = ()) -> str:
        """One CSV of mean/std tables; with `key`, a first column of that name holding each table's name."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        lead = [key] if key else []
        writer.writerow([*lead, "Source", *[h for c in self.columns for h in (c, f"{c} std")]])
        for i, stats in enumerate(tables):
            for s in self.sources:
                name = [names[i]] if key else []
                writer.writerow([*name, s, *[_text(v) for c in self.columns for v in (stats.mean[s][c], stats.std[s][c])]])
        return buf.getvalue()

    def to_dict(self) -> dict:
        """table.json of a several-seed run: classes, metric, seeds, std (its definition), rows (mean
        AP@0.5), rows_std, then ap50_95, ap_small, ap_medium, ap_large (means) each with a ``_std``
        twin, baseline, delta_vs_baseline {S: {C: {mean, std}}} (AP@0.5; also
        delta_vs_baseline_ap50_95 when that is the main metric), per_seed {K: {folder, rows, ap50_95}},
        not_covered, no_ground_truth, notes, subject, images (and group_by with groups)."""
        out: dict = {"classes": list(self.classes), "metric": self.metric, "seeds": list(self.seeds), "std": STD_DEFINITION}
        for m in ALL_METRICS:
            key = "rows" if m == "ap50" else m
            out[key] = _rounded(self.stats[m].mean)
            out[f"{key}_std"] = _rounded(self.stats[m].std)
        out["baseline"] = self.baseline
        for m, stats in self.deltas.items():
            key = "delta_vs_baseline" if m == "ap50" else f"delta_vs_baseline_{m}"
            out[key] = {s: {c: (None if stats.mean[s][c] is None else {"mean": _round(stats.mean[s][c]), "std": _round(stats.std[s][c])})
                            for c in self.columns} for s in stats.mean}
        out["per_seed"] = {
            str(k): {"folder": self.folders[k],
                     **{("rows" if m == "ap50" else m): {s: {c: _round(self.stats[m].values[s][c][i]) for c in self.columns}
                                                         for s in self.sources} for m in MAIN_PER_SEED}}
            for i, k in enumerate(self.seeds)
        }
        out["not_covered"] = {s: list(c) for s, c in self.not_covered.items() if c}
        out["no_ground_truth"] = list(self.no_ground_truth)
        out["notes"] = [*self.metric_table(self.metric).notes(), *self.notes]
        out["subject"] = self.subject
        out["images"] = self.images
        if self.group_by:
            out["group_by"] = self.group_by
        return out

    def group_dict(self) -> dict:
        """table_by_group.json: {"group_by", "metric", "seeds", "std", "groups": {G: {"images", "rows",
        "rows_std", "ap50_95", "ap50_95_std"}}} (means and stds across seeds)."""
        groups = {}
        for g, (n, st) in self.groups.items():
            body: dict = {"images": n}
            for m in st:
                key = "rows" if m == "ap50" else m
                body[key] = _rounded(st[m].mean)
                body[f"{key}_std"] = _rounded(st[m].std)
            groups[g] = body
        return {"group_by": self.group_by, "metric": self.metric, "classes": list(self.classes), "seeds": list(self.seeds),
                "std": STD_DEFINITION, "groups": groups}

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """Every file of the module docstring into `out_dir` (atomic writes); returns their paths."""
        from fusedet.plots import plot_ap_per_class

        out = Path(out_dir)
        paths = []
        for metric, stem in ((self.metric, "table"), (self.other_metric(), f"table_{self.other_metric()}")):
            paths += [write_text_atomic(out / f"{stem}.csv", self.to_csv(metric)),
                      write_text_atomic(out / f"{stem}.md", self.to_markdown(metric)),
                      write_text_atomic(out / f"{stem}.tex", self.to_latex(metric))]
        paths.append(write_text_atomic(out / "table.json", json.dumps(self.to_dict(), indent=2) + "\n"))
        sizes = [self.metric_table(m) for m in SIZE_METRICS]
        paths.append(write_text_atomic(out / "table_by_size.md", "\n".join(t.to_markdown() for t in sizes)))
        paths.append(write_text_atomic(out / "table_by_size.tex", "\n".join(t.to_latex() for t in sizes)))
        size_names = [m.removeprefix("ap_") for m in SIZE_METRICS]
        paths.append(write_text_atomic(out / "table_by_size.csv", self._stacked_csv([self.stats[m] for m in SIZE_METRICS], "Size", size_names)))
        if self.deltas:
            paths.append(write_text_atomic(out / "delta_vs_baseline.csv", self._delta_csv()))
        paths.append(plot_ap_per_class(self.metric_table(self.metric), out / "ap_per_class.png",
                                       interval_label=f"error bars: ± 1 std over {len(self.seeds)} seeds"))
        if self.groups:
            paths.append(write_text_atomic(out / "table_by_group.json", json.dumps(self.group_dict(), indent=2) + "\n"))
            tables = [self.metric_table(self.metric, st[self.metric], title=f"{g} ({n} images): {self._title(self.metric)}")
                      for g, (n, st) in self.groups.items()]
            md = self.group_summary().to_markdown() + "".join("\n" + t.to_markdown() for t in tables)
            paths.append(write_text_atomic(out / "table_by_group.md", md))
            paths.append(write_text_atomic(out / "table_by_group.csv",
                                           self._stacked_csv([st[self.metric] for _, st in self.groups.values()], "Group", list(self.groups))))
        return paths

    def _delta_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["metric", "baseline", "source", "column", "mean", "std", *[f"seed {k}" for k in self.seeds]])
        for m, stats in self.deltas.items():
            for s in stats.mean:
                for c in self.columns:
                    if stats.mean[s][c] is not None:
                        writer.writerow([m, self.baseline, s, c, _text(stats.mean[s][c]), _text(stats.std[s][c]),
                                         *[_text(v) for v in stats.values[s][c]]])
        return buf.getvalue()


MAIN_PER_SEED = ("ap50", "ap50_95")


def summarize_seeds(reports: Mapping[int, DetectionReport], folders: Mapping[int, str] | None = None) -> SeedSummary:
    """The mean ± std summary of one report per training seed (seed -> report, at least two, each
    from the same split, sources, classes and report settings; see the module docstring).
    `folders`: seed -> where that seed's report lives (default ``seed_K``). InputError when fewer than
    two reports are given or they do not describe the same evaluation."""
    seeds = list(reports)
    if len(seeds) < 2:
        raise InputError(f"a summary across seeds needs at least 2 seeds (got {len(seeds)})")
    first = reports[seeds[0]]
    for k in seeds[1:]:
        r = reports[k]
        same = (r.classes == first.classes and r.sources == first.sources and r.scores.images == first.scores.images
                and r.options == first.options and r.subject == first.subject)
        if not same:
            raise InputError(f"the reports of seeds {seeds[0]} and {k} are not of the same evaluation "
                             "(classes, sources, images or report settings differ)")
    columns = [*first.classes, "mAP"]
    options = first.options
    stats = {m: seed_stats([reports[k].scores.points[m] for k in seeds], columns) for m in ALL_METRICS}
    mean_main = {s: np.array([np.nan if v is None else v for v in stats[options.metric].mean[s].values()]) for s in first.sources}
    baseline, notes = resolve_baseline(options.baseline, first.sources, mean_main)
    deltas: dict[str, SeedStats] = {}
    if baseline is not None:
        for m in dict.fromkeys(("ap50", options.metric)):
            per_seed = [{s: reports[k].scores.points[m][s] - reports[k].scores.points[m][baseline] for s in first.sources if s != baseline}
                        for k in seeds]
            deltas[m] = seed_stats(per_seed, columns)
    groups: dict[str, tuple[int, dict[str, SeedStats]]] = {}
    names = list(first.groups)
    if names and all(list(reports[k].groups) == names for k in seeds):
        for g in names:
            groups[g] = (first.groups[g].images,
                         {m: seed_stats([reports[k].groups[g].points[m] for k in seeds], columns) for m in dict.fromkeys(("ap50", options.metric))})
    partial = sorted({c for st in [*stats.values(), *deltas.values()] for c in st.partial})
    if partial:
        notes.append(f"undefined (-) because some seeds have no value there: {', '.join(partial)}")
    return SeedSummary(
        seeds=seeds,
        classes=list(first.classes),
        sources=list(first.sources),
        metric=options.metric,
        subject=first.subject,
        images=first.scores.images,
        stats=stats,
        baseline=baseline,
        deltas=deltas,
        groups=groups,
        folders={k: (folders or {}).get(k, seed_folder(k)) for k in seeds},
        not_covered={s: list(c) for s, c in first.not_covered.items()},
        not_covered_reasons=dict(first.not_covered_reasons),
        no_ground_truth=list(first.scores.no_ground_truth),
        group_by=first.grouping.spec if first.grouping else None,
        notes=notes,
    )


def merge_run_info(infos: Mapping[int, dict], folders: Mapping[int, str], summary: SeedSummary) -> dict:
    """run.json of a several-seed run from each seed's run.json (seed -> its dict): what they share
    once (versions, settings, dataset, sources, ...), what is each seed's own (training, detector,
    class mapping, resumed sources, timings, report) under ``seeds.per_seed``."""
    seeds = list(infos)
    own = ("training", "detector", "class_mapping", "resumed_sources", "timings_s", "report", "created", "paper_rows")
    first = infos[seeds[0]]
    out = {k: v for k, v in first.items() if k not in own}
    training = dict(first.get("training", {}))
    training.pop("models", None)
    training["seed"] = seeds[0]
    training["training_seeds"] = seeds
    out["training"] = training
    out["seeds"] = {
        "seeds": seeds,
        "std": STD_DEFINITION,
        "baseline": summary.baseline,
        "tables": "table.*: mean ± std across seeds; each seed's own report in its folder",
        "per_seed": {str(k): {"folder": folders[k], **{key: infos[k].get(key) for key in own if key in infos[k]}} for k in seeds},
    }
    out["created"] = max(str(i.get("created", "")) for i in infos.values())
    return out


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def _rounded(rows: Mapping[str, Mapping[str, float | None]]) -> dict:
    return {s: {c: _round(v) for c, v in r.items()} for s, r in rows.items()}


def _text(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


__all__ = ["STD_DEFINITION", "SeedStats", "SeedSummary", "merge_run_info", "seed_folder", "seed_stats", "summarize_seeds"]
