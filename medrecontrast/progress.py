"""Progress of the long stages that are not training iterations (scoring a test set, PatchCore's feature
passes): a bar on a terminal, a plain line every tenth elsewhere (a log file, a scheduler's output), nothing
when ``progress`` is False. Training draws its own bar (:func:`medrecontrast.engine.train_loop`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def tracked(
    items: Iterable[T], total: int, description: str, progress: bool | int, count: Callable[[T], int] = lambda _: 1
) -> Iterator[T]:
    """Yield ``items`` while showing how many of ``total`` things (``count(item)`` per item, e.g. the images of a
    batch) ``description`` has done; ``progress``: True (a bar on a terminal, plain lines elsewhere), an integer
    (plain lines), False (silent)."""
    if not progress:
        yield from items
        return
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if progress is True and console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task, count(item))
        return
    began, done, reported = time.perf_counter(), 0, 0
    console.print(f"  {description}: 0/{total}", markup=False)
    for item in items:
        yield item
        done += count(item)
        if done - reported >= max(1, total // 10) or done >= total:
            reported = done
            elapsed = time.perf_counter() - began
            eta = f", ETA {elapsed / done * (total - done):.0f} s" if done < total else ""
            console.print(f"  {description}: {done}/{total}, {elapsed:.0f} s{eta}", markup=False)
