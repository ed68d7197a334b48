"""A LAMMPS input file as a list of commands, each with the file and line it came from.

exprefine feeds an input to LAMMPS one command at a time, so that it can attach its force
callback right after a ``fix ... external pf/callback`` command is defined. This module splits
the text as LAMMPS does for the cases that matter: ``&`` at the end of a line continues the
command on the next one, ``#`` outside quotes starts a comment, ``include FILE`` is expanded
(paths relative to the working directory, as LAMMPS resolves them). ``jump`` needs LAMMPS to
read the file itself and is refused with the line that holds it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

#: commands that compute forces, so the force callback must be ready before them
FORCE_COMMANDS = frozenset({"run", "minimize", "rerun"})


class LammpsInputError(ValueError):
    """A LAMMPS input exprefine cannot run as given (one line naming the file and line)."""


@dataclass(frozen=True)
class InputCommand:
    """One LAMMPS command of an input file.

    Attributes:
        text: the command, continuation lines joined and the comment removed.
        source: the file it came from.
        line: its first line number in that file (1-based).
    """

    text: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def words(self) -> list[str]:
        return split_words(self.text)

    @property
    def name(self) -> str:
        words = self.words
        return words[0] if words else ""

    @property
    def computes_forces(self) -> bool:
        """Whether the command runs MD or a minimisation: a ``run``/``minimize``/``rerun``, or an
        ``if`` whose ``then`` or ``else`` commands hold one (``if "..." then "run 100 upto"``)."""
        if self.name in FORCE_COMMANDS:
            return True
        if self.name != "if":
            return False
        return any(part.split()[0] in FORCE_COMMANDS for part in self.words[2:] if part.split())


def split_words(text: str) -> list[str]:
    """The words of a command, quotes respected (an unbalanced quote: plain whitespace split)."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:
        return text.split()


def strip_comment(line: str) -> str:
    """``line`` without a ``#`` comment that lies outside single, double or triple quotes."""
    quote: str | None = None
    k = 0
    while k < len(line):
        if quote is None:
            if line.startswith('"""', k):
                quote, k = '"""', k + 3
                continue
            if line[k] in "'\"":
                quote = line[k]
            elif line[k] == "#":
                return line[:k]
        elif line.startswith(quote, k):
            k += len(quote)
            quote = None
            continue
        k += 1
    return line


def external_fix_id(command: InputCommand) -> str | None:
    """The fix ID if ``command`` defines a ``fix ID group external ...``, else None.

    Raises:
        LammpsInputError: a fix external in another mode than ``pf/callback``.
    """
    words = command.words
    if len(words) < 4 or words[0] != "fix" or words[3] != "external":
        return None
    mode = words[4] if len(words) > 4 else ""
    if mode != "pf/callback":
        raise LammpsInputError(f"{command.where}: fix {words[1]} external {mode}: exprefine supplies forces through "
                               "'fix ID all external pf/callback 1 1'")
    return words[1]


def read_input_commands(path: str | Path, _depth: int = 0) -> list[InputCommand]:
    """The commands of the LAMMPS input ``path`` in order (``include`` files expanded).

    Raises:
        FileNotFoundError: ``path`` (or an included file) does not exist.
        LammpsInputError: a ``jump`` command, or includes nested more than 20 deep.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMMPS input not found: {path}")
    if _depth > 20:
        raise LammpsInputError(f"{path}: include files nested more than 20 deep")
    commands: list[InputCommand] = []
    pending = ""
    first = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        body = strip_comment(raw).rstrip()
        if not pending:
            first = number
        else:
            body = body.lstrip()
        if body.endswith("&"):
            pending += body[:-1].rstrip() + " "
            continue
        text = (pending + body).strip()
        pending = ""
        if text:
            commands += _expand(InputCommand(text, str(path), first), _depth)
    if pending.strip():
        commands += _expand(InputCommand(pending.strip(), str(path), first), _depth)
    return commands


def _expand(command: InputCommand, depth: int) -> list[InputCommand]:
    words = command.words
    if command.name == "jump":
        raise LammpsInputError(f"{command.where}: 'jump' needs LAMMPS to read the file itself, which exprefine "
                               "cannot do while it supplies the forces: unroll the loop or use 'run N every'")
    if command.name == "include" and len(words) == 2 and "$" not in words[1]:
        return read_input_commands(words[1], depth + 1)
    return [command]
