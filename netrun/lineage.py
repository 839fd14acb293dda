"""A packet's lineage, from the tables: where it came from and where it went.

A packet is either injected (`inject_packet`, or a dead letter's replay) or created inside
an epoch; it ends consumed by an epoch, destroyed (dead-lettered) or still live somewhere.
An epoch's inputs are its salvo (`epochs.salvo`); its outputs are the packets created with
its ID (`CreatePacket` history actions). Walking both ways gives the ancestors (the packets
this one was made from) and the descendants (what was made from it).

Cost: each level of the walk is a few key lookups (`history_refs` lists the actions that
mention an epoch or a packet), whatever the size of the history. `depth` and `limit` bound
the walk.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import NotFoundError

NetInspector = Any  # the caller's inspector (`inspector.NetInspector`; not imported: it imports this module)


def _marks(items: list[str]) -> str:
    return ", ".join("?" * len(items))


class Lineage:
    def __init__(self, inspector: NetInspector, limit: int) -> None:
        self.db = inspector
        self.limit = limit
        self.truncated = False
        self.origins: dict[str, dict] = {}  # packet -> how it came to be
        self.ends: dict[str, dict] = {}  # packet -> how it ended (or where it is)

    def learn_origins(self, packets: list[str], epochs: list[str]) -> list[dict]:
        """How `packets` came to be, and which packets `epochs` created (key lookups)."""
        if not packets and not epochs:
            return []
        rows = [{"seq": r[8], "type": r[0], "name": r[1], "epoch_id": r[3], "packet_id": r[4], "node_name": r[5],
                 "data": r[7]} for r in self.db.history_mentioning([*packets, *epochs])
                if r[0] == "action" and r[1] in ("CreatePacket", "TransportPacketToLocation")
                and (r[4] in set(packets) or r[3] in set(epochs))]
        return self.absorb(rows)

    def absorb(self, rows: list[dict]) -> list[dict]:
        """Learn origins from history rows (in seq order); returns the CreatePacket rows of epochs."""
        created = []
        for row in rows:
            packet = row["packet_id"]
            if row["name"] not in ("CreatePacket", "TransportPacketToLocation") or row["type"] != "action":
                continue
            if row["name"] == "CreatePacket":
                if row["epoch_id"] is not None:
                    self.origins[packet] = {"how": "created", "epoch": row["epoch_id"], "node": row["node_name"],
                                            "seq": row["seq"]}
                    created.append(row)
                else:
                    self.origins.setdefault(packet, {"how": "injected", "seq": row["seq"]})
            elif packet in self.origins and self.origins[packet]["how"] == "injected":
                data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"] or "{}")
                self.origins[packet].update(node=row["node_name"], port=data.get("port"))
                if data.get("replay_of"):
                    self.origins[packet].update(how="replayed", replay_of=data["replay_of"])
        return created

    def learn_ends(self, packets: list[str]) -> None:
        """Where `packets` are or how they ended (packets table and dead letters, by key)."""
        if not packets:
            return
        for row in self.db._rows(f"SELECT id, state, location, node_name, port_name, epoch_id, finished_at "
                                 f"FROM packets WHERE id IN ({_marks(packets)})", packets):
            end: dict[str, Any] = {"state": row["state"]}
            if row["state"] == "live":
                end.update(location=row["location"], node=row["node_name"], port=row["port_name"])
            else:
                end.update(epoch=row["epoch_id"], node=row["node_name"], at=row["finished_at"])
            self.ends[row["id"]] = end
        for row in self.db._rows(f"SELECT seq, packet_id, reason, status, replayed_as FROM dead_letters "
                                 f"WHERE packet_id IN ({_marks(packets)})", packets):
            self.ends[row["packet_id"]]["dead_letter"] = {k: row[k] for k in ("seq", "reason", "status",
                                                                               "replayed_as")}

    def salvo_inputs(self, epochs: list[str]) -> dict[str, list[str]]:
        """Each epoch's input packets (its salvo)."""
        if not epochs:
            return {}
        found = {}
        for row in self.db._rows(f"SELECT id, salvo FROM epochs WHERE id IN ({_marks(epochs)})", epochs):
            found[row["id"]] = [packet for _port, packet in json.loads(row["salvo"] or "[]")]
        return found

    def room(self, seen: dict, new: list[str]) -> list[str]:
        left = self.limit - len(seen)
        if len(new) > left:
            self.truncated = True
            return new[:max(left, 0)]
        return new


def trace(inspector: NetInspector, packet_id: str, *, depth: int = 10, limit: int = 200) -> dict:
    """The lineage of `packet_id` (see module docstring). Raises NotFoundError for an unknown packet."""
    walk = Lineage(inspector, limit)
    walk.learn_ends([packet_id])
    if packet_id not in walk.ends:
        raise NotFoundError(f"{inspector.path}: no packet {packet_id}", packet=packet_id)
    path = inspector.history(packet=packet_id)  # the packet's own records tell its origin too
    walk.absorb(path)

    ancestors: dict[str, dict] = {}
    descendants: dict[str, dict] = {}
    up = [packet_id]  # packets whose makers we look for
    down = [packet_id]  # packets whose replays we look for
    down_epochs = [e for e in [walk.ends[packet_id].get("epoch")] if walk.ends[packet_id]["state"] != "live" and e]
    level = 0
    while level < depth and (up or down or down_epochs):
        level += 1
        # inputs of the epochs that made the packets of the previous level
        makers = {p: walk.origins[p]["epoch"] for p in up if walk.origins.get(p, {}).get("how") == "created"}
        inputs = walk.salvo_inputs(sorted(set(makers.values())))
        parents: list[str] = []
        for child, epoch in makers.items():
            for parent in inputs.get(epoch, []):
                if parent not in ancestors and parent != packet_id:
                    ancestors[parent] = {"packet": parent, "depth": -level, "child": child}
                    parents.append(parent)
        for child in up:
            original = walk.origins.get(child, {}).get("replay_of")
            if original and original not in ancestors:
                ancestors[original] = {"packet": original, "depth": -level, "child": child}
                parents.append(original)
        parents = walk.room(ancestors, parents)
        # a dead-lettered packet's replay is made from it, as an epoch's outputs are from its inputs
        replays = [letter["replayed_as"] for p in down
                   if (letter := walk.ends.get(p, {}).get("dead_letter")) and letter["replayed_as"]]
        created = walk.learn_origins(parents + replays, down_epochs)
        children = [r["packet_id"] for r in created if r["epoch_id"] in set(down_epochs)] + replays
        children = walk.room(descendants, list(dict.fromkeys(
            c for c in children if c not in descendants and c != packet_id)))
        for child in children:
            descendants[child] = {"packet": child, "depth": level,
                                  "parent_epoch": walk.origins.get(child, {}).get("epoch")}  # None: a replay
        walk.learn_ends(parents + children)
        up = parents
        down = children
        down_epochs = sorted({walk.ends[c]["epoch"] for c in children
                              if c in walk.ends and walk.ends[c]["state"] != "live" and walk.ends[c].get("epoch")})
    for entry in [*ancestors.values(), *descendants.values()]:
        entry["origin"] = walk.origins.get(entry["packet"])
        entry["end"] = walk.ends.get(entry["packet"])
    return {
        "packet": packet_id,
        "value": inspector.value_preview(packet_id, limit=2000),
        "origin": walk.origins.get(packet_id),
        "end": walk.ends[packet_id],
        "path": [{"seq": r["seq"], "timestamp": r["timestamp"], "type": r["type"], "name": r["name"],
                  "epoch": r["epoch_id"], "node": r["node_name"], "data": r["data"]} for r in path],
        "ancestors": sorted(ancestors.values(), key=lambda e: (-e["depth"], e["packet"])),
        "descendants": sorted(descendants.values(), key=lambda e: (e["depth"], e["packet"])),
        "truncated": walk.truncated,
    }
