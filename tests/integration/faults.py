"""The fault tests' measurements (fault injected, what the system did, data lost, time to recover), printed as a
table at the end of the run (tests/conftest.py) and copied into the fault table of docs/reliability.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    injected: str
    behaviour: str
    lost: int
    recovery_s: float


RECORDED: list[Fault] = []


def record(injected: str, behaviour: str, lost: int, recovery_s: float) -> None:
    RECORDED.append(Fault(injected, behaviour, lost, recovery_s))


def table() -> list[str]:
    lines = ["| fault injected | what the system did | data lost | time to recover |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {f.injected} | {f.behaviour} | {f.lost} | {f.recovery_s:.1f} s |" for f in RECORDED]
    return lines
