"""Reading what Discord sends without trusting its shape: a slash command's options are checked
against the types they declare before discord.py hands their values to a command (a number
where text belongs used to end in an ``AttributeError`` and a generic "something went wrong").

Discord itself checks options against the commands it was given, so a mismatch means the
commands it knows are not the bot's (an old sync) or the payload was not Discord's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MALFORMED_COMMAND", "option_problem"]

MALFORMED_COMMAND = (
    "Discord sent this command in a shape onbrand doesn't expect ({problem}). Try again in a "
    "minute; if it keeps happening, ask an admin to restart onbrand so that Discord gets its "
    "current commands."
)

_SUBCOMMANDS = {1, 2}  # SUB_COMMAND, SUB_COMMAND_GROUP: options of their own
_SNOWFLAKES = {6, 7, 8, 9, 11}  # user, channel, role, mentionable, attachment: ids as text
_WORDS = {3: "text", 4: "a whole number", 5: "true or false", 10: "a number"}


def option_problem(options: Any, *, where: str = "") -> str | None:
    """What is wrong with a command's ``options`` (Discord's list of option objects), in a few
    words; None when each has a name and a value of the type it declares."""
    if options is None:
        return None
    if not isinstance(options, list):
        return f"the options{where} are not a list"
    for option in options:
        name = option.get("name") if isinstance(option, dict) else None
        if not isinstance(name, str):
            return f"an option{where} has no name"
        kind = option.get("type")
        if kind in _SUBCOMMANDS:
            problem = option_problem(option.get("options"), where=f" of {name}")
            if problem is not None:
                return problem
        elif "value" not in option:
            return f"option “{name}” has no value"
        elif not _fits(kind, option["value"]):
            wanted = _WORDS.get(kind, "an id") if kind in _WORDS or kind in _SNOWFLAKES else None
            if wanted is None:
                return f"option “{name}” has a type onbrand doesn't know"
            return f"option “{name}” should be {wanted}"
    return None


def _fits(kind: Any, value: Any) -> bool:
    if kind == 3:
        return isinstance(value, str)
    if kind == 4:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == 5:
        return isinstance(value, bool)
    if kind == 10:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in _SNOWFLAKES:
        return isinstance(value, str | int) and str(value).isdigit()
    return False
