#!/usr/bin/env python3
"""Writes the hand-made seeds of the protobuf fuzz targets into corpus/.

The wire format is encoded here by hand (a few lines) so that no protobuf
package is needed; libFuzzer grows the corpus from these with `make fuzz`.
Run from fuzz/: python3 seeds.py
"""
import pathlib
import struct
import time


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, value):
    """One field: int -> varint, float -> fixed64, str/bytes -> length-delimited."""
    if isinstance(value, bool) or isinstance(value, int):
        return varint(number << 3) + varint(int(value))
    if isinstance(value, float):
        return varint(number << 3 | 1) + struct.pack("<d", value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def message(*fields):
    return b"".join(fields)


def timestamp(seconds):
    return message(field(1, seconds))


def identifier(kind, value):
    return message(field(1, kind), field(2, value))


def customer_by(kind, value):
    return message(field(2, identifier(kind, value)))


def value_string(text):
    return message(field(1, text))


def map_entry(key, value):
    return message(field(1, key), field(2, value))


NOW = int(time.time()) - 3600


def touchpoint(touchpoint_id, customer, channel, kind, properties=()):
    return message(
        field(1, touchpoint_id),
        field(2, customer),
        field(4, channel),
        field(5, kind),
        field(7, timestamp(NOW)),
        *[field(9, map_entry(k, value_string(v))) for k, v in properties],
    )


def write(target, name, data):
    folder = pathlib.Path("corpus") / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


# Journey: a batch of touchpoints of several kinds and channels.
write("touchpoint", "batch", message(
    field(1, touchpoint("t-1", customer_by(4, "cookie-1"), 1, 1, [("page", "/shop")])),
    field(1, touchpoint("t-2", customer_by(1, "anna@example.com"), 2, 3, [("product_id", "p-9")])),
    field(1, touchpoint("t-3", message(field(1, "0190c0de-0000-7000-8000-000000000001")), 5, 6)),
))
write("touchpoint", "one", message(field(1, touchpoint("t-4", customer_by(2, "+46701234567"), 3, 2))))

# Profile: identify with identifiers of each kind; attributes; consent;
# preferences; an attribute definition; a segment with a rule.
write("profile_request", "identify", bytes([0]) + message(
    field(1, identifier(1, "Anna@Example.com")),
    field(1, identifier(2, "070-123 45 67")),
    field(1, identifier(5, "x:@anna")),
    field(1, message(field(1, 8), field(2, "L-77"), field(3, "loyalty_card"))),
))
write("profile_request", "attributes", bytes([1]) + message(
    field(2, map_entry("plan", value_string("gold"))),
    field(2, map_entry("spend", message(field(2, 42.5)))),
    field(3, "req-1"),
))
write("profile_request", "consent", bytes([2]) + message(
    field(2, message(field(1, "marketing"), field(2, 3), field(3, 1))),
))
write("profile_request", "preferences", bytes([3]) + message(
    field(2, message(field(1, "sv"), field(2, "Europe/Stockholm"))),
))
write("profile_request", "definition", bytes([4]) + message(
    field(1, message(field(1, "tenure_months"), field(2, 2))),
))
write("profile_request", "segment", bytes([5]) + message(
    field(1, message(field(1, "gold"), field(2, "Gold"), field(4, "attributes.plan == 'gold'"))),
))

# Recommendation: a new action; a contact-policy update; a decision's
# context; a scoring policy.
write("recommendation_request", "action", bytes([0]) + message(
    field(1, message(field(1, "upgrade-5g"), field(2, "Upgrade to 5G"), field(3, 1))),
    field(2, "req-1"),
))
write("recommendation_request", "contact_policy", bytes([1]) + message(
    field(1, message(field(1, message(field(1, 4), field(2, 1))))),
    field(2, message(field(1, "channels"))),
))
write("recommendation_request", "decide", bytes([2]) + message(
    field(1, customer_by(1, "anna@example.com")),
    field(2, 1),
    field(3, message(field(1, "guided_shopping"), field(2, "cart"), field(3, "/cart"))),
    field(4, 3),
))
write("recommendation_request", "policy", bytes([3]) + message(
    field(1, message(field(1, "p-1"), field(4, message(field(1, 1), field(2, 0.5))))),
))

# Feedback: a survey with an NPS question; answers to it.
survey = message(field(1, message(
    field(2, "After a purchase"),
    field(3, message(field(1, "nps"), field(2, 1), field(3, map_entry("en", "How likely...")))),
    field(5, 4),
    field(6, "surveys"),
)))
write("feedback_request", "survey", bytes([0]) + survey)
answers = message(field(1, message(field(6, message(field(1, "nps"), field(2, 9))))))
write("feedback_request", "answers", bytes([1, len(survey)]) + survey + answers)
