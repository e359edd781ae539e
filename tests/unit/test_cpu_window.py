"""GetSystemMetrics.cpu_percent is the CPU use over the last 10 seconds, not since start."""

from __future__ import annotations

from aurea.telemetry.cpu import CpuWindow


class Fake:
    def __init__(self) -> None:
        self.t = 0.0
        self.cpu = 0.0


def test_percent_covers_the_last_ten_seconds_not_the_lifetime() -> None:
    f = Fake()
    w = CpuWindow(clock=lambda: f.t, cpu=lambda: f.cpu)
    # 100 busy seconds (one core, 100 %), sampled each second ...
    for _ in range(100):
        f.t += 1.0
        f.cpu += 1.0
        w.sample()
    # ... then 20 idle seconds.
    for _ in range(20):
        f.t += 1.0
        w.sample()
    assert w.percent() == 0.0  # a lifetime average would say 83 %
    # 5 s at half a core: over the last 10 s that is 25 %.
    for _ in range(5):
        f.t += 1.0
        f.cpu += 0.5
        w.sample()
    assert abs(w.percent() - 25.0) < 1e-9


def test_young_process_reports_since_start_and_keeps_few_samples() -> None:
    f = Fake()
    w = CpuWindow(clock=lambda: f.t, cpu=lambda: f.cpu)
    f.t, f.cpu = 2.0, 1.0
    assert w.percent() == 50.0
    for _ in range(1000):
        f.t += 1.0
        w.sample()
    assert len(w._samples) <= 12
