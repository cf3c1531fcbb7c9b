"""The shell block of docs/benchmarks.md "Learning from verdicts": every command is one the
benchmark's own parser accepts (the run itself takes an hour; test_smoke.py runs it tiny)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from benchmarks import feedback

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def feedback_commands() -> list[list[str]]:
    section = DOC.read_text().split("## Learning from verdicts (`benchmarks/feedback.py`)", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "no bash block in the section"
    text = block.group(1).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[:2] == ["python", "benchmarks/feedback.py"], line
            commands.append(words[2:])
    return commands


def test_every_command_in_the_docs_parses_with_the_benchmarks_options():
    commands = feedback_commands()
    assert len(commands) == 3
    parser = feedback.build_parser()
    run, reprint, quick = (parser.parse_args(c) for c in commands)
    assert run.datasets == "all" and run.jobs == 2 and run.time_limit > 0
    assert reprint.from_csv == run.out  # re-prints the run's own CSV
    assert quick.quick
