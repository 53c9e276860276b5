"""What a sync did: the plan, each API's outcome with timings, ARM call counts, and the exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from apimsync import html
from apimsync.apply import Outcome
from apimsync.changes import Action, Plan
from apimsync.text import printable


@dataclass
class Report:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    named_values: list[Outcome] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)  # ARM calls by kind: reads, writes, deletes, throttled

    @property
    def failed(self) -> list[str]:
        """One line per thing that did not sync: endpoint failures from the plan, then failed writes."""
        lines = [f"{f.workspace}/{f.endpoint} [{f.stage}]: {f.message}" for f in self.plan.failures]
        lines += [f"{o.api_id}: {o.error}" for o in (*self.named_values, *self.outcomes) if not o.ok]
        return lines

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.withheld

    @property
    def exit_code(self) -> int:
        """0 when everything synced, 1 when some endpoint or API failed or deletes were withheld."""
        return 0 if self.ok else 1

    @property
    def summary(self) -> str:
        if self.dry_run:
            return f"Dry run: nothing written. {self.plan.summary}"
        if not self.plan.has_changes:
            return (f"No changes: APIM already matches Databricks ({self.plan.count(Action.NOOP)} APIs unchanged, "
                    f"{self.calls.get('writes', 0)} writes)."
                    + (f" {len(self.failed)} failed." if self.failed else ""))
        applied = sum(1 for o in self.outcomes if o.ok)
        return (f"Applied {applied} of {len(self.outcomes)} changes in {self.seconds:.1f}s "
                f"({self.calls.get('writes', 0)} writes, {self.calls.get('deletes', 0)} deletes, "
                f"{self.calls.get('reads', 0)} reads, {self.calls.get('throttled', 0)} throttled); "
                f"{len(self.failed)} failed.")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "dry_run": self.dry_run, "summary": self.summary,
                "seconds": round(self.seconds, 3), "calls": self.calls, "plan": self.plan.to_dict(),
                "named_values": [o.to_dict() for o in self.named_values],
                "outcomes": [o.to_dict() for o in self.outcomes], "failed": self.failed}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        lines = [str(self.plan), ""]
        for o in sorted((*self.named_values, *self.outcomes), key=lambda o: (o.ok, o.api_id)):
            status = "ok" if o.ok else f"FAILED: {o.error}"
            lines.append(printable(f"  {o.action.value:7} {o.api_id} ({o.seconds:.2f}s) {status}"))
        lines += ["", self.summary]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [("ok" if o.ok else "failed", o.api_id, o.action.value, f"{o.seconds:.2f}s", o.error or "")
                for o in (*self.named_values, *self.outcomes)]
        rows += [("failed", f.api_id or "", f"{f.workspace}/{f.endpoint}", f.stage, f.message)
                 for f in self.plan.failures]
        rows += [("skipped", s.api_id or "", f"{s.workspace}/{s.endpoint}", "", s.reason) for s in self.plan.skipped]
        return html.table(f"apimsync sync — {self.plan.target}", ("status", "api", "change", "time", "detail"),
                          rows, [*self.plan.withheld, self.summary])
