"""Who the customer is: an escalation's `data.customer`, checked and normalised (docs/sessions.md).

`dashboard.services.escalate` stores the result on the session; the workbench shows the name
and a panel of the rest, and lists the customer's earlier sessions by `id`.
"""

from __future__ import annotations

from typing import Any

from realtime.channels import InvalidChannel, validate_name


class InvalidCustomer(ValueError):
    """`data.customer` cannot be used; the message says why (the API answers 400)."""


# `data.customer` of an escalation: who the customer is, shown to agents (docs/sessions.md).
CUSTOMER_LIMITS = {"id": 64, "name": 200, "email": 254}
MAX_CUSTOMER_FIELDS = 20
MAX_FIELD_NAME = 64
MAX_FIELD_VALUE = 500


def valid_customer(value: object) -> dict[str, Any]:
    """`data.customer` checked and normalised to {"id", "name", "email", "fields"} ({} if absent).

    Every other key is a free field shown in the customer panel: strings, numbers and booleans
    only, so a page never has to render a nested structure it cannot lay out.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        value = {"name": value}  # a bare string is the customer's name
    if not isinstance(value, dict):
        raise InvalidCustomer("data.customer must be a JSON object (or a string: the customer's name)")
    customer: dict[str, Any] = {}
    for key, limit in CUSTOMER_LIMITS.items():
        if key in value and value[key] is not None:
            customer[key] = _text(value[key], f"data.customer.{key}", limit).strip()
    if customer.get("id"):
        try:
            validate_name(customer["id"], "data.customer.id")
        except InvalidChannel as exc:
            raise InvalidCustomer(str(exc)) from None
    fields = {key: item for key, item in value.items() if key not in CUSTOMER_LIMITS}
    if len(fields) > MAX_CUSTOMER_FIELDS:
        raise InvalidCustomer(f"data.customer has {len(fields)} free fields; the limit is {MAX_CUSTOMER_FIELDS}")
    for key, item in fields.items():
        if not key.strip() or len(key) > MAX_FIELD_NAME:
            raise InvalidCustomer(f"data.customer field names must be 1 to {MAX_FIELD_NAME} characters")
        if isinstance(item, str):
            _text(item, f"data.customer.{key}", MAX_FIELD_VALUE)
        elif not isinstance(item, (int, float, bool)) and item is not None:
            raise InvalidCustomer(f"data.customer.{key} must be a string, number, boolean or null")
    if fields:
        customer["fields"] = fields
    return {key: item for key, item in customer.items() if item not in ("", None)}


def columns(customer: dict[str, Any]) -> dict[str, Any]:
    """The ChatSession fields that hold a checked customer (the JSON and its indexed copies)."""
    return {
        "customer": customer,
        "customer_ref": customer.get("id", ""),
        "customer_name": customer.get("name", ""),
    }


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidCustomer(f"{what} must be a string")
    if len(value) > limit:
        raise InvalidCustomer(f"{what} is {len(value)} characters; the limit is {limit}")
    return value
