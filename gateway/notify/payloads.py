"""What a budget alert says, in the three shapes a webhook can take.

- `json`: the gateway's own event, every figure as a field (for an on-call tool or a
  script), with the same sentence in `text`;
- `slack`: a Slack incoming webhook's message, `text` with `blocks` (Slack's "Sending
  messages using incoming webhooks");
- `teams`: a Microsoft Teams incoming webhook's (or Workflows webhook's) message holding an
  Adaptive Card (Microsoft's "Send Adaptive Cards using an Incoming Webhook").

Every shape says what was crossed, whose request crossed it, the spend so far and the
projected spend at the period's end.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.quota.alerts import Crossing

_PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}
TEST_TEXT = "Test from the image gateway: this webhook receives its budget alerts."


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def amount(unit: str, value: float) -> str:
    """`$40.50` or `812 images`."""
    return f"${value:,.2f}" if unit == "usd" else f"{value:,.0f} images"


def period_label(stamp: str) -> str:
    """`2026-11`, `2026-W47` or `2026-11-21` for a window's stamp."""
    if "W" in stamp:
        return stamp.replace("W", "-W")
    return "-".join(part for part in (stamp[:4], stamp[4:6], stamp[6:]) if part)


def headline(c: Crossing) -> str:
    """One sentence: what was crossed, and the spend against the budget."""
    who = f"Team {c.subject}" if c.scope == "team" else f"User {c.subject}"
    budget = f"{_PERIOD_WORD.get(c.window, c.window)} {c.unit} budget"
    spent = f"{amount(c.unit, c.used)} of {amount(c.unit, c.limit)}"
    if c.refused:
        return f"{who} has hit its {budget}: a request by {c.user} was refused ({spent})."
    share = 100 * c.used / c.limit if c.limit else 100.0
    return f"{who} has used {share:.0f} % of its {budget} ({spent})."


def details(c: Crossing, timezone: str) -> dict[str, str]:
    """The figures beside the headline, labelled."""
    return {
        "Thresholds crossed": ", ".join(f"{p} %" for p in c.percents),
        "Period": f"{period_label(c.period)} ({timezone})",
        "Spent so far": amount(c.unit, c.used),
        "Budget": amount(c.unit, c.limit),
        "Projected at the period's end": amount(c.unit, c.projected),
        "Request by": f"{c.user} (team {c.team})",
    }


def event(c: Crossing, timezone: str) -> dict[str, Any]:
    """The `json` shape: the gateway's own event."""
    return {
        "type": "budget.threshold_crossed",
        "occurred_at": _iso(c.at),
        "budget": {
            "scope": c.scope,
            "subject": c.subject,
            "unit": c.unit,
            "window": c.window,
            "period": period_label(c.period),
            "timezone": timezone,
            "starts_at": _iso(c.start),
            "resets_at": _iso(c.end),
            "limit": c.limit,
        },
        "thresholds": list(c.percents),
        "reached_by": "refusal" if c.refused else "usage",
        "used": c.used,
        "projected": round(c.projected, 6),
        "request": {"user": c.user, "team": c.team},
        "text": headline(c),
    }


def slack(text: str, facts: Mapping[str, str]) -> dict[str, Any]:
    """A Slack incoming webhook message: the text, then the facts as a section's fields."""
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in facts.items()]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})  # Slack takes up to 10
    return {"text": text, "blocks": blocks}


def teams(text: str, facts: Mapping[str, str]) -> dict[str, Any]:
    """A Teams incoming webhook message carrying an Adaptive Card: the text, then a fact set."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": text, "wrap": True, "weight": "Bolder"}
    ]
    if facts:
        body.append(
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts.items()]}
        )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
    return {"type": "message", "attachments": [attachment]}


def payload(format: str, c: Crossing | None, timezone: str) -> dict[str, Any]:
    """The body for a webhook of `format`: a crossing, or (None) a test message."""
    if c is None:
        if format == "json":
            return {"type": "webhook.test", "text": TEST_TEXT}
        return (slack if format == "slack" else teams)(TEST_TEXT, {})
    if format == "json":
        return event(c, timezone)
    return (slack if format == "slack" else teams)(headline(c), details(c, timezone))
