"""`medrecontrast data check`: open every file of a task before any training starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import track

from medrecontrast.data.items import TaskData
from medrecontrast.data.leaks import USER_PROTOCOLS, DataLeaks, find_leaks
from medrecontrast.data.readers import ImageHeader, read_header, read_image
from medrecontrast.errors import UnreadableImageError


@dataclass
class CheckReport:
    """Counts of a task's protocol, and every file that failed to open."""

    data: TaskData
    problems: list[dict] = field(default_factory=list)  # {"file": ..., "problem": ...}
    deep: bool = False
    leaks: DataLeaks | None = None

    @property
    def refused_leak(self) -> bool:
        """A user's own split whose training and test share a patient: refused at planning, so a failed check."""
        return bool(self.leaks and self.leaks.patients and self.data.task.protocol.name in USER_PROTOCOLS)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.refused_leak

    def to_dict(self) -> dict:
        summary = self.data.counts()
        summary.update(
            ok=self.ok,
            checked="decoded" if self.deep else "headers",
            problems=self.problems,
            fundus_crop="on the fly (run `medrecontrast data prepare aptos` to do it once)"
            if self.data.fundus_crop
            else None,
            leaks=None if self.leaks is None else {**self.leaks.to_dict(), "refused": self.refused_leak},
        )
        return summary


def check_task_data(
    data: TaskData, deep: bool = False, progress: bool = True, leaks: bool = False, near: bool = False
) -> CheckReport:
    """Open every image and mask (header and size; decode all with ``deep``); collect what is broken.

    A mask must have its image's height and width. Broken files are never skipped: a run on a
    silently smaller set would not be the task's protocol (fix or remove them, then check again).
    ``leaks`` also looks for patients and byte-identical files shared by training and test
    (:mod:`medrecontrast.data.leaks`); ``near`` for near-duplicate images too.
    """
    problems: list[dict] = []
    console = Console(stderr=True)
    splits = [("train", it) for it in data.train] + [("test", it) for it in data.test]
    for split, record in track(
        splits, description=f"checking {data.task.name}", console=console, disable=not progress, transient=True
    ):
        for problem in _item_problems(record, deep):
            problems.append({"split": split, "id": record["id"], **problem})
    return CheckReport(data, problems, deep, find_leaks(data, near=near) if leaks or near else None)


def _item_problems(record: dict, deep: bool) -> list[dict]:
    sizes = {}
    problems = []
    for key in ("image", "mask"):
        path = record.get(key)
        if path is None:
            continue
        try:
            sizes[key] = _open(path, record, deep, key)
        except FileNotFoundError:
            problems.append({"file": path, "problem": "file does not exist"})
        except UnreadableImageError as exc:
            problems.append({"file": path, "problem": exc.reason})
    if len(sizes) == 2 and sizes["image"] != sizes["mask"]:
        (h, w), (mh, mw) = sizes["image"], sizes["mask"]
        problems.append({"file": record["mask"], "problem": f"mask is {mh}x{mw} but its image is {h}x{w}"})
    return problems


def _open(path: str, record: dict, deep: bool, key: str = "image") -> tuple[int, int]:
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    axis = record.get("slice_axis", 2)
    if deep:
        array = read_image(path, record.get("slice"), axis, record.get("intensity") if key == "image" else None)
        return array.shape[1], array.shape[2]
    header: ImageHeader = read_header(path, axis)
    return header.height, header.width


def print_check(summary: dict, console, err_console) -> None:
    """``data check``'s summary (:meth:`CheckReport.to_dict`) on rich consoles: the counts table, the unit of analysis,
    notes, leaks and problems (stderr), and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"task {summary['task']}")
    patients = summary.get("patients")
    for column in ("split", "label / class", "images", *(["patients"] if patients else [])):
        table.add_column(column)
    for split in ("train", "test"):
        for label, n in summary[split].items():
            table.add_row(split, label, str(n), *([str(patients[split].get(label, 0))] if patients else []))
            for category, count in summary["categories_by_label"][split].get(label, {}).items():
                # under the label it belongs to
                table.add_row("", f"  {escape(category)}", str(count), *([""] if patients else []), style="dim")
    console.print(table)
    console.print(
        escape(
            f"unit of analysis: {summary['unit']}"
            if patients
            else "unit of analysis: one image = one unit (the files name no patient)"
        ),
        highlight=False,
        soft_wrap=True,
    )
    for line in summary.get("labelling", []):
        err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
    leaks = summary.get("leaks") or {}
    for index, line in enumerate(leaks.get("warnings", [])):
        # a refused leak is the shared patients', the first line where there are any (DataLeaks.lines)
        style = "[red]problem:[/]" if leaks.get("refused") and index == 0 else "[yellow]warning:[/]"
        err_console.print(f"{style} {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"test images with a pixel mask: {summary['masks']}; files opened: {summary['checked']}")
    if summary.get("masks_missing"):
        err_console.print(
            f"[yellow]warning:[/] {summary['masks_missing']} abnormal test image(s) have no mask: pixel AUROC and "
            "AUPRO will use the others only"
        )
    if summary["fundus_crop"]:
        console.print(f"fundus border crop: {summary['fundus_crop']}")
    for problem in summary["problems"][:20]:
        err_console.print(
            f"[red]problem:[/] {escape(str(problem['file']))}: {escape(str(problem['problem']))}",
            highlight=False,
            soft_wrap=True,
        )
    if len(summary["problems"]) > 20:
        err_console.print(f"... and {len(summary['problems']) - 20} more problems (use --json for all)")
    if not summary["ok"]:
        what = (
            "move each shared patient's images to one side" if leaks.get("refused") else "fix or remove the files above"
        )
        console.print(f"[red]FAILED[/]: {what}, then check again")
    elif summary["checked"] == "headers":
        console.print(
            "[green]OK[/] (headers and sizes only: a truncated or corrupt file passes this check; --deep decodes "
            "every image, as bench does before training)"
        )
    else:
        console.print("[green]OK[/] (every image and mask decoded)")
