"""Sample program-user events: the design document's sample (as valid JSON) and a deterministic generator
for tests, the demo and ``scripts/bench/events.py``; plus a small Kafka producer helper (confluent-kafka).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import random
from typing import Any, Iterable, Iterator

# The design document's sample event (004): ISODate(...) written as ISO-8601 strings, "..." parts dropped.
SAMPLE_EVENT: dict[str, Any] = {
    "_id": "63bfa8f173f6368ebde21bbe",
    "deleted": False,
    "programId": "5f362b78af0a4decfa9a106f",
    "programName": "$prorgramName",
    "programExternalId": "$programExternalId",
    "requestForPIIConsent": True,
    "userRoleInformation": {
        "role": "HM,DEO",
        "state": "db331a8c-b9e2-45f8-b3c0-7ec1e826b6df",
        "district": "1dcbc362-ec4c-4559-9081-e0c2864c2931",
        "school": "c5726207-4f9f-4f45-91f1-3e9e8e84d824",
    },
    "userId": "ba9aa220-ff1b-4717-b6ea-ace55f04fc16",
    "appInformation": {"appName": "Diksha", "appVersion": "5.2"},
    "userProfile": {
        "userLocations": [
            {"code": "2822", "name": "ANANTAPUR", "id": "2f76dcf5-e43b-4f71-a3f2-c8f19e1fce03", "type": "district",
             "parentId": "bc75cc99-9205-463e-a722-5326857838f8"},
            {"code": "282262", "name": "AGALI", "id": "966c3be4-c125-467d-aaff-1eb1cd525923", "type": "block",
             "parentId": "2f76dcf5-e43b-4f71-a3f2-c8f19e1fce03"},
            {"code": "28", "name": "Andhra Pradesh", "id": "bc75cc99-9205-463e-a722-5326857838f8", "type": "state",
             "parentId": None},
            {"code": "2822620004", "name": "ZPHS AGALI", "id": "beb0bcf4-d7cd-4a72-8f35-be8e5b03c0d1",
             "type": "cluster", "parentId": "966c3be4-c125-467d-aaff-1eb1cd525923"},
            {"code": "28226200816", "name": "SMT PRAMEELAMMA AND SRI KGA GUPTA EM UP SCHOOL",
             "id": "01337588247832985613211", "type": "school", "parentId": ""},
        ],
        "profileUserTypes": [
            {"type": "administrator", "subType": "hm"},
            {"type": "administrator", "subType": "crp"},
            {"type": "administrator", "subType": "chm"},
        ],
        "framework": {"board": ["CBSE"]},
        "rootOrg": {"id": "0126796199493140480", "orgName": "Staging Custodian Organization"},
    },
    "noOfResourcesStarted": 3,
    "updatedAt": "2023-01-12T06:30:56.829Z",
    "createdAt": "2023-01-12T06:30:09.476Z",
    "__v": 0,
}

# What the sample event becomes in program_enrollment (dates in Asia/Kolkata: 06:30Z is 12:00 IST).
SAMPLE_ROW: dict[str, Any] = {
    "program_id": "5f362b78af0a4decfa9a106f",
    "program_externalid": "$programExternalId",
    "program_name": "$prorgramName",
    "pii_consent_required": True,
    "user_id": "ba9aa220-ff1b-4717-b6ea-ace55f04fc16",
    "user_locations": {
        "district_name": "ANANTAPUR", "district_id": "2f76dcf5-e43b-4f71-a3f2-c8f19e1fce03", "district_code": "2822",
        "block_name": "AGALI", "block_id": "966c3be4-c125-467d-aaff-1eb1cd525923", "block_code": "282262",
        "state_name": "Andhra Pradesh", "state_id": "bc75cc99-9205-463e-a722-5326857838f8", "state_code": "28",
        "cluster_name": "ZPHS AGALI", "cluster_id": "beb0bcf4-d7cd-4a72-8f35-be8e5b03c0d1",
        "cluster_code": "2822620004",
        "school_name": "SMT PRAMEELAMMA AND SRI KGA GUPTA EM UP SCHOOL", "school_id": "01337588247832985613211",
        "school_code": "28226200816",
    },
    "organisation_id": "0126796199493140480",
    "organisation_name": "Staging Custodian Organization",
    "user_sub_type": "hm,crp,chm",
    "user_type": "administrator",
    "created_at": dt.date(2023, 1, 12),
    "updated_at": dt.date(2023, 1, 12),
}


def event(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the sample event with top-level keys replaced (``None`` values kept; use ``drop``)."""
    e = copy.deepcopy(SAMPLE_EVENT)
    for key in overrides.pop("drop", ()):
        e.pop(key, None)
    e.update(overrides)
    return e


def iso_ms(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


SUB_TYPES = ("hm", "crp", "chm", "deo", "brc", "teacher")
STATES = (("28", "Andhra Pradesh"), ("29", "Karnataka"), ("09", "Uttar Pradesh"))


def generated_events(n: int, seed: int = 7, programs: int = 50, users: int = 400_000,
                     malformed_every: int = 100, start: dt.datetime | None = None,
                     keys: set | None = None) -> Iterator[bytes]:
    """``n`` realistic event payloads (deterministic). Every ``malformed_every``-th one is bad (rotating
    through broken JSON, missing programId, missing userId, an unparseable date); users are drawn at random,
    so some (program, user) pairs recur: updates, possibly with an older updatedAt (late events). ``keys`` collects (programId, userId) of
    the valid events."""
    rnd = random.Random(seed)
    t0 = start or dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    program_ids = [f"{rnd.getrandbits(96):024x}" for _ in range(programs)]
    bad_kinds = ("json", "program", "user", "date")
    for i in range(n):
        if malformed_every and i % malformed_every == malformed_every - 1:
            kind = bad_kinds[(i // malformed_every) % len(bad_kinds)]
            if kind == "json":
                yield b'{"programId": "' + str(i).encode() + b'", "userId": '
                continue
        else:
            kind = None
        p = program_ids[rnd.randrange(programs)]
        u = rnd.randrange(users)
        state_code, state_name = STATES[u % len(STATES)]
        d, b, c, s = u % 13, u % 97, u % 1009, u % 20011
        created = t0 + dt.timedelta(seconds=i)
        updated = created + dt.timedelta(seconds=rnd.randrange(0, 3600))
        sub = [SUB_TYPES[(u + k) % len(SUB_TYPES)] for k in range(1 + u % 3)]
        e = {
            "_id": f"{i:024x}", "deleted": False, "programId": p, "programName": f"Program {p[:6]}",
            "programExternalId": f"PGM-{p[:8]}", "requestForPIIConsent": (u % 2 == 0),
            "userId": f"{u:08x}-ff1b-4717-b6ea-{u:012x}",
            "userRoleInformation": {"role": ",".join(x.upper() for x in sub), "state": f"st-{state_code}"},
            "appInformation": {"appName": "Diksha", "appVersion": "5.2"},
            "userProfile": {
                "userLocations": [
                    {"type": "state", "name": state_name, "id": f"st-{state_code}", "code": state_code, "parentId": None},
                    {"type": "district", "name": f"DISTRICT {d}", "id": f"di-{d}", "code": f"{state_code}{d:02d}",
                     "parentId": f"st-{state_code}"},
                    {"type": "block", "name": f"BLOCK {b}", "id": f"bl-{b}", "code": f"{state_code}{d:02d}{b:02d}",
                     "parentId": f"di-{d}"},
                    {"type": "cluster", "name": f"CLUSTER {c}", "id": f"cl-{c}", "code": f"{c:010d}",
                     "parentId": f"bl-{b}"},
                    {"type": "school", "name": f"SCHOOL {s}", "id": f"sc-{s}", "code": f"{s:011d}",
                     "parentId": f"cl-{c}"},
                ],
                "profileUserTypes": [{"type": "administrator", "subType": x} for x in sub],
                "rootOrg": {"id": f"{u % 7:019d}", "orgName": f"Org {u % 7}"},
            },
            "noOfResourcesStarted": rnd.randrange(10),
            "createdAt": iso_ms(created), "updatedAt": iso_ms(updated), "__v": 0,
        }
        if kind == "program":
            e.pop("programId")
        elif kind == "user":
            e["userId"] = ""
        elif kind == "date":
            e["updatedAt"] = "12/31/2024 10:00"
        elif keys is not None:
            keys.add((p, e["userId"]))
        yield json.dumps(e, separators=(",", ":")).encode()


def message_key(payload: dict[str, Any]) -> bytes | None:
    """Kafka key: program and user, so the events of one enrollment stay in one partition (ordered)."""
    p, u = payload.get("programId"), payload.get("userId")
    return f"{p}:{u}".encode() if p and u else None


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]],
            config: dict[str, Any] | None = None, timeout: float = 120) -> int:
    """Produce (key, value) pairs with confluent-kafka (acks=all); raises if any delivery failed."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                         "enable.idempotence": True, **(config or {})})
    errors: list = []
    n = 0

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or errors:
        raise RuntimeError(f"kafka produce to {topic}: {remaining} undelivered, errors: {errors[:3]}")
    return n


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 30) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        fut.result(timeout=timeout)


def delete_topic(bootstrap: str, topic: str, timeout: float = 30) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics([topic]).values():
        fut.result(timeout=timeout)
