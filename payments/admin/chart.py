"""The dashboard's chart: a server-rendered SVG of confirmations per hour (no script needed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.clock import KST
from .queries import HourBucket


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    kind: str  # "ok" | "fail"
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int
    bottom: float  # y of the baseline
    left: int
    bar_width: float
    max_value: int
    bars: list[Bar]
    ticks: list[Tick]
    success: int
    failure: int


def bar_chart(hours: Sequence[HourBucket], width: int = 720, height: int = 220) -> Chart:
    """Geometry for the server-rendered SVG: per hour a success and a failure bar side by side."""
    left, top, right, bottom_pad = 44, 14, 8, 36
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    peak = max([h.success for h in hours] + [h.failure for h in hours] + [1])
    slot = plot_w / max(len(hours), 1)
    bar_w = max(slot * 0.36, 1.0)
    base = top + plot_h
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for i, h in enumerate(hours):
        x0 = left + i * slot + slot * 0.12
        label = f"{h.start.astimezone(KST):%H}시"
        for j, (kind, value, word) in enumerate(
            (("ok", h.success, "성공"), ("fail", h.failure, "실패"))
        ):
            bar_h = round(plot_h * value / peak, 1)
            bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 1),
                    y=round(base - bar_h, 1),
                    height=bar_h,
                    kind=kind,
                    title=f"{label} {word} {value}건",
                )
            )
        if i % 3 == 0:
            ticks.append(Tick(round(left + i * slot + slot / 2, 1), label))
    return Chart(
        width=width,
        height=height,
        top=top,
        bottom=base,
        left=left,
        bar_width=round(bar_w, 1),
        max_value=peak,
        bars=bars,
        ticks=ticks,
        success=sum(h.success for h in hours),
        failure=sum(h.failure for h in hours),
    )
