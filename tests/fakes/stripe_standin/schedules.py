"""Subscription schedules: built from a subscription, phases replaced by update, applied at boundaries.

At a phase boundary the subscription's price switches without restarting its period (each phase's
`proration_behavior` defaults to `none` here); after the last phase the schedule is released
(`end_behavior=release`, the default) or completes and cancels the subscription (`cancel`).
"""

from __future__ import annotations

from typing import Any

from . import forms, objects, subscriptions
from .errors import StripeError
from .periods import add_interval
from .store import State

PRORATION_BEHAVIORS = ("none", "create_prorations", "always_invoice")


def from_subscription(st: State, sub: dict[str, Any], now: int) -> dict[str, Any]:
    if sub["schedule"]:
        raise StripeError.invalid(
            f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.",
            param="from_subscription")
    if sub["status"] not in subscriptions.LIVE_STATUSES:
        raise StripeError.invalid(f"You cannot create a schedule from a {sub['status']} subscription.",
                                  param="from_subscription")
    item = sub["items"]["data"][0]
    phase = objects.schedule_phase(
        start=sub["current_period_start"], end=sub["current_period_end"], price_id=item["price"]["id"],
        quantity=item["quantity"], currency=sub["currency"], proration_behavior="none")
    sched = objects.schedule(st, sub=sub, phases=[phase], now=now)
    sched["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
    before = st.render(sub)
    sub["schedule"] = sched["id"]
    st.emit("subscription_schedule.created", sched)
    st.emit_changes("customer.subscription.updated", sub, before)
    return sched


def update(st: State, sched: dict[str, Any], params: dict[str, Any], now: int) -> None:
    if sched["status"] not in ("active", "not_started"):
        raise StripeError.invalid(
            f"You cannot update a subscription schedule that is currently in the `{sched['status']}` status.")
    end_behavior = forms.opt_str(params, "end_behavior")
    if end_behavior is not None and end_behavior not in ("release", "cancel"):
        raise StripeError.invalid(f"Invalid end_behavior: {end_behavior}", param="end_behavior")
    sub = st.objects[sched["subscription"]]
    if "phases" in params:
        phases = _build_phases(st, sched, sub, forms.opt_list(params, "phases"), now)
        sched["phases"] = phases
        current = _phase_at(phases, now)
        sched["current_phase"] = ({"start_date": current["start_date"], "end_date": current["end_date"]}
                                  if current else None)
        if current:  # a change to the running phase applies now
            behavior = forms.opt_str(params, "proration_behavior") or "create_prorations"
            _apply_phase(st, sub, current, now, behavior)
    if end_behavior:
        sched["end_behavior"] = end_behavior
    sched["metadata"] = forms.merge_metadata(sched["metadata"], params)
    st.emit("subscription_schedule.updated", sched)


def _build_phases(st: State, sched: dict[str, Any], sub: dict[str, Any], raw: list[Any],
                  now: int) -> list[dict[str, Any]]:
    if not raw:
        raise StripeError.invalid("A schedule needs at least one phase.", param="phases")
    phases: list[dict[str, Any]] = []
    prev_end = None
    for i, p in enumerate(raw):
        where = f"phases[{i}]"
        if not isinstance(p, dict):
            raise StripeError.invalid(f"Invalid object: {where}", param=where)
        items = forms.opt_list(p, "items")
        if len(items) != 1 or not isinstance(items[0], dict):
            raise StripeError.invalid("The stand-in supports exactly one item per phase.", param=f"{where}[items]")
        price_obj = st.get(forms.req_str(items[0], "price"), "price", param=f"{where}[items][0][price]")
        interval, count = subscriptions.recurring_of(price_obj)
        quantity = forms.opt_int(items[0], "quantity") or 1
        start = _start_of(p, where, prev_end, sched, now)
        end = _end_of(p, where, start, interval, count, last=i == len(raw) - 1, next_raw=raw[i + 1:])
        if end <= start:
            raise StripeError.invalid("A phase's end_date must be after its start_date.", param=f"{where}[end_date]")
        behavior = forms.opt_str(p, "proration_behavior") or "none"
        if behavior not in PRORATION_BEHAVIORS:
            raise StripeError.invalid(f"Invalid proration_behavior: {behavior}", param=f"{where}[proration_behavior]")
        phases.append(objects.schedule_phase(
            start=start, end=end, price_id=price_obj["id"], quantity=quantity, currency=sub["currency"],
            proration_behavior=behavior, metadata=forms.merge_metadata({}, p)))
        prev_end = end
    return phases


def _start_of(p: dict[str, Any], where: str, prev_end: int | None, sched: dict[str, Any], now: int) -> int:
    raw = p.get("start_date")
    if raw == "now":
        return now
    given = forms.opt_int(p, "start_date")
    if prev_end is None:
        return given if given is not None else sched["phases"][0]["start_date"]
    if given is not None and given != prev_end:
        raise StripeError.invalid("The start_date of a phase must equal the end_date of the one before it.",
                                  param=f"{where}[start_date]")
    return prev_end


def _end_of(p: dict[str, Any], where: str, start: int, interval: str, count: int, *, last: bool,
            next_raw: list[Any]) -> int:
    if p.get("end_date") == "now":
        raise StripeError.invalid("end_date=now is not supported by the stand-in.", param=f"{where}[end_date]")
    end = forms.opt_int(p, "end_date")
    if end is not None:
        return end
    iterations = forms.opt_int(p, "iterations")
    if iterations:
        return add_interval(start, interval, count * iterations)
    duration = forms.opt_dict(p, "duration")
    if duration:
        return add_interval(start, forms.req_str(duration, "interval"),
                            forms.opt_int(duration, "interval_count") or 1)
    if not last and next_raw and isinstance(next_raw[0], dict) and forms.opt_int(next_raw[0], "start_date"):
        return int(next_raw[0]["start_date"])
    if last:
        return add_interval(start, interval, count)  # Stripe's default: one iteration
    raise StripeError.invalid("Every phase but the last needs an end_date, iterations or duration.",
                              param=f"{where}[end_date]")


def _phase_at(phases: list[dict[str, Any]], at: int) -> dict[str, Any] | None:
    for phase in phases:
        if phase["start_date"] <= at < phase["end_date"]:
            return phase
    return None


def _apply_phase(st: State, sub: dict[str, Any], phase: dict[str, Any], at: int, behavior: str) -> None:
    item = phase["items"][0]
    if sub["status"] not in subscriptions.LIVE_STATUSES:
        return
    subscriptions.change_price(st, sub, st.objects[item["price"]], quantity=item["quantity"],
                               proration_behavior=behavior, now=at)


def next_boundary(sched: dict[str, Any]) -> int | None:
    """When this schedule next acts: the end of its current phase."""
    if sched["status"] != "active" or not sched["current_phase"]:
        return None
    return sched["current_phase"]["end_date"]


def cross_boundary(st: State, sched: dict[str, Any], at: int) -> None:
    """The current phase ended at `at`: start the next one, or release/complete the schedule."""
    sub = st.objects[sched["subscription"]]
    following = [p for p in sched["phases"] if p["start_date"] >= at]
    if following:
        phase = following[0]
        sched["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
        _apply_phase(st, sub, phase, at, phase["proration_behavior"])
        st.emit("subscription_schedule.updated", sched)
        return
    sched["current_phase"] = None
    if sched["end_behavior"] == "cancel":
        sched.update({"status": "completed", "completed_at": at})
        st.emit("subscription_schedule.completed", sched)
        if sub["status"] not in ("canceled", "incomplete_expired"):
            subscriptions.cancel_now(st, sub, at)
        return
    release(st, sched, at)


def release(st: State, sched: dict[str, Any], now: int) -> None:
    if sched["status"] not in ("active", "not_started"):
        raise StripeError.invalid(
            f"You cannot release a subscription schedule that is currently in the `{sched['status']}` status.")
    sub = st.objects[sched["subscription"]]
    sched.update({"status": "released", "released_at": now, "released_subscription": sub["id"],
                  "subscription": None, "current_phase": None})
    before = st.render(sub)
    sub["schedule"] = None
    st.emit("subscription_schedule.released", sched)
    st.emit_changes("customer.subscription.updated", sub, before)


def cancel(st: State, sched: dict[str, Any], now: int) -> None:
    """Cancel the schedule and, as Stripe does, its subscription."""
    if sched["status"] not in ("active", "not_started"):
        raise StripeError.invalid(
            f"You cannot cancel a subscription schedule that is currently in the `{sched['status']}` status.")
    sub = st.objects[sched["subscription"]]
    if sub["status"] in ("canceled", "incomplete_expired"):
        sched.update({"status": "canceled", "canceled_at": now, "current_phase": None})
        st.emit("subscription_schedule.canceled", sched)
        return
    subscriptions.cancel_now(st, sub, now)  # also marks the schedule canceled and emits its event
