"""go-units' ``HumanDuration`` ("2 hours"), shared by the front ends' CREATED and STATUS texts
(the CLI's tables, the API's container list). Imports nothing else from dockyard."""

from __future__ import annotations

from datetime import timedelta


def human_duration(d: float | timedelta) -> str:
    """go-units ``HumanDuration``; ``d`` is in seconds (or a timedelta).

    Thresholds, exactly as go-units (duration.go):
      seconds = int(d) (truncated):  < 1 "Less than a second"; == 1 "1 second"; < 60 "N seconds"
      minutes = int(d / 60):         == 1 "About a minute"; < 60 "N minutes"
      hours = int(d / 3600 + 0.5) (rounded): == 1 "About an hour"; < 48 "N hours";
        < 24*7*2 (two weeks) "hours/24 days"; < 24*30*2 (60 days) "hours/24/7 weeks";
        < 24*365*2 (two years) "hours/24/30 months"
      otherwise "int(d / 3600)/24/365 years" (hours truncated here, not rounded).
    Divisions are Go's integer divisions (truncating; all operands are positive there).
    """
    secs = d.total_seconds() if isinstance(d, timedelta) else float(d)
    seconds = int(secs)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(secs / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(secs / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(secs / 3600) // 24 // 365} years"
