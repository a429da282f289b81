"""The simulator's brain: a pure, seeded planner of Harmony actions (no I/O, no clock).

:class:`Planner` keeps a model of the chat world (who is online, who is typing, recent messages per
channel, reactions, unread notifications, megolm sessions) and draws the next :class:`Action` from
one ``random.Random``. Arrival times are virtual seconds (exponential inter-arrival gaps with mean
``1 / rate``: a Poisson process); the executor turns them into wall-clock waits. Because the planner
never looks at the database or the clock, the same seed always yields the same sequence of actions —
the simulator's determinism rests entirely here.

Actions refer to channels by *name* and to messages by *handle* (``"m17"``); the executor maps
them to database ids, so the plan does not depend on identity sequences.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from harmony_lab.demo import _text

__all__ = [
    "PRESENCE_SPACING_S",
    "Action",
    "ActionKind",
    "ChannelSpec",
    "Planner",
    "Status",
    "UserSpec",
    "build_world",
    "extra_user",
    "seed_world",
]

PRESENCE_SPACING_S: Final = 7.0
"""Minimum virtual seconds between two presence changes of one user (the server allows 5 presence
calls per 30 s per channel; 7 s keeps a user's track/untrack well inside that)."""

_RECENT_MESSAGES: Final = 30
_TYPING_PATIENCE_S: Final = 6.0


class Status(StrEnum):
    """A simulated user's presence: the four tracked/untracked states plus ``offline`` (disconnected)."""

    ONLINE = "online"
    AWAY = "away"
    DND = "dnd"
    INVISIBLE = "invisible"
    OFFLINE = "offline"


_ACTIVE: Final = frozenset({Status.ONLINE, Status.AWAY, Status.DND, Status.INVISIBLE})


class ActionKind(StrEnum):
    PRESENCE = "presence"  # profiles.status + the realtime presence client
    TYPING_START = "typing_start"  # typing_indicators INSERT
    TYPING_STOP = "typing_stop"  # typing_indicators DELETE
    MESSAGE = "message"  # messages INSERT (+ notifications, + typing stop)
    EDIT = "edit"  # messages UPDATE content/edited_at
    DELETE = "delete"  # messages UPDATE deleted_at (soft delete)
    REACT = "react"  # message_reactions INSERT (+ notification)
    UNREACT = "unreact"  # message_reactions DELETE
    KEY_SHARE = "key_share"  # megolm_session_shares INSERT, one row per recipient
    READ = "read"  # notifications UPDATE read_at
    JOIN = "join"  # channel_members INSERT
    LEAVE = "leave"  # channel_members DELETE
    OPEN_DM = "open_dm"  # channels INSERT (kind dm) + channel_members INSERT ×2


@dataclass(frozen=True, slots=True)
class UserSpec:
    id: str  # auth.users.id / profiles.id (uuid text)
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    kind: str  # "text" | "dm"
    members: frozenset[str]
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a simulated user does. ``at`` is virtual seconds since the simulation started."""

    seq: int
    at: float
    kind: ActionKind
    actor: str
    channel: str | None = None
    message: str | None = None
    reply_to: str | None = None
    text: str | None = None
    emoji: str | None = None
    status: Status | None = None
    session: str | None = None
    users: tuple[str, ...] = ()
    notify: tuple[tuple[str, str], ...] = ()  # (user id, notification kind)
    stop_typing: str | None = None  # the channel whose typing indicator this action ends

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict without empty fields (the action log's format)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            if isinstance(value, StrEnum):
                value = str(value)
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            elif isinstance(value, float):
                value = round(value, 6)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        bits = [f"#{self.seq}", f"t={self.at:.2f}s", str(self.kind), self.actor[-4:]]
        for name in ("channel", "message", "status", "emoji"):
            value = getattr(self, name)
            if value is not None:
                bits.append(f"{name}={value}")
        return f"<Action {' '.join(bits)}>"


# --------------------------------------------------------------------------------------------
# the world

_EXTRA_NAMES: Final = (
    ("grace", "Grace Hopper"),
    ("heidi", "Heidi Lamarr"),
    ("ivan", "Ivan Sutherland"),
    ("judy", "Judy Estrin"),
    ("ken", "Ken Thompson"),
    ("linus", "Linus Pauling"),
    ("margaret", "Margaret Hamilton"),
    ("niklaus", "Niklaus Wirth"),
    ("olivia", "Olivia Ortiz"),
    ("peggy", "Peggy Carter"),
    ("quinn", "Quinn Mallory"),
    ("radia", "Radia Perlman"),
    ("sophie", "Sophie Wilson"),
    ("tim", "Tim Berners"),
    ("ursula", "Ursula Franklin"),
    ("vint", "Vint Cerf"),
    ("wendy", "Wendy Hall"),
    ("xavier", "Xavier Leroy"),
    ("yukihiro", "Yukihiro Matz"),
    ("zoe", "Zoe Washburne"),
)


def extra_user(index: int) -> UserSpec:
    """The ``index``-th user beyond the six seed users (0-based); deterministic id and name."""
    base, display = _EXTRA_NAMES[index % len(_EXTRA_NAMES)]
    round_ = index // len(_EXTRA_NAMES)
    username = base if round_ == 0 else f"{base}{round_ + 1}"
    if round_:
        display = f"{display} {round_ + 1}"
    uid = uuid.UUID(f"00000000-0000-4000-a000-{7 + index:012d}")
    return UserSpec(str(uid), username, display)


def seed_world() -> tuple[list[UserSpec], list[ChannelSpec]]:
    """The seeded Harmony users and channels (from :mod:`harmony_lab.local.schema`)."""
    from harmony_lab.local import schema

    names = {"alice": "Alice Liddell", "bob": "Bob Builder", "carol": "Carol Danvers"}
    names |= {"dave": "Dave Bowman", "erin": "Erin Brockovich", "frank": "Frank Poole"}
    users = [UserSpec(str(uid), name, names.get(name, name.title())) for name, uid in schema.USERS.items()]
    channels: list[ChannelSpec] = []
    owners = {"general": "alice", "random": "bob", "engineering": "carol"}
    for name, cid in schema.CHANNELS.items():
        kind = "text" if name in schema.TEXT_CHANNELS else "dm"
        members = frozenset(str(u) for u in schema.MEMBERS[cid])
        owner = str(schema.USERS[owners[name]]) if name in owners else None
        channels.append(ChannelSpec(name, kind, members, owner))
    return users, channels


@dataclass
class _Message:
    handle: str
    author: str
    content: str
    deleted: bool = False
    reactions: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Channel:
    name: str
    kind: str
    members: set[str]
    owner: str | None
    recent: deque[_Message] = field(default_factory=lambda: deque(maxlen=_RECENT_MESSAGES))
    session: int = 0
    needs_rotation: bool = True
    messages_in_session: int = 0


_TRANSITIONS: Final[dict[Status, tuple[tuple[Status, float], ...]]] = {
    Status.OFFLINE: ((Status.ONLINE, 0.72), (Status.DND, 0.1), (Status.INVISIBLE, 0.1), (Status.AWAY, 0.08)),
    Status.ONLINE: ((Status.AWAY, 0.32), (Status.DND, 0.2), (Status.INVISIBLE, 0.12), (Status.OFFLINE, 0.36)),
    Status.AWAY: ((Status.ONLINE, 0.6), (Status.OFFLINE, 0.3), (Status.DND, 0.1)),
    Status.DND: ((Status.ONLINE, 0.6), (Status.AWAY, 0.2), (Status.OFFLINE, 0.2)),
    Status.INVISIBLE: ((Status.ONLINE, 0.5), (Status.OFFLINE, 0.5)),
}

_BASE_WEIGHTS: Final[dict[ActionKind, float]] = {
    ActionKind.MESSAGE: 30.0,
    ActionKind.TYPING_START: 13.0,
    ActionKind.TYPING_STOP: 2.0,
    ActionKind.EDIT: 4.0,
    ActionKind.DELETE: 2.5,
    ActionKind.REACT: 13.0,
    ActionKind.UNREACT: 2.5,
    ActionKind.KEY_SHARE: 3.0,
    ActionKind.READ: 3.5,
    ActionKind.JOIN: 1.2,
    ActionKind.LEAVE: 0.8,
    ActionKind.OPEN_DM: 1.0,
    ActionKind.PRESENCE: 9.0,
}


class Planner:
    """Draws Harmony actions from a seeded RNG over a model of the chat world.

    ``users`` are the simulated (acting) users; ``bystanders`` exist and belong to channels — they are
    mentioned, messaged and notified — but never act. ``rate`` is the mean number of actions per
    virtual second. Iterating yields actions forever; :meth:`next` returns one.
    """

    def __init__(
        self,
        users: Iterable[UserSpec],
        channels: Iterable[ChannelSpec],
        *,
        rate: float,
        seed: int | None,
        bystanders: Iterable[UserSpec] = (),
        online_target: float = 0.65,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of actions per second; got {rate!r}")
        self.users: dict[str, UserSpec] = {u.id: u for u in users}
        if len(self.users) < 2:
            raise ValueError("the simulation needs at least 2 users")
        self.bystanders: dict[str, UserSpec] = {u.id: u for u in bystanders if u.id not in self.users}
        self.rate = float(rate)
        self.seed = seed
        self.rng = random.Random(seed)
        self.online_target = online_target
        self.now = 0.0
        self.seq = 0
        self.status: dict[str, Status] = dict.fromkeys(self.users, Status.OFFLINE)
        self.last_presence: dict[str, float] = dict.fromkeys(self.users, -PRESENCE_SPACING_S)
        self.typing: dict[str, tuple[str, float]] = {}  # user -> (channel, since)
        self.unread: dict[str, int] = dict.fromkeys([*self.users, *self.bystanders], 0)
        self.channels: dict[str, _Channel] = {
            c.name: _Channel(c.name, c.kind, set(c.members), c.owner) for c in channels
        }
        self._handles = 0
        self._sessions = 0

    # -- public -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Action]:
        while True:
            yield self.next()

    def next(self) -> Action:
        """The next action; advances virtual time by an exponential gap (mean ``1 / rate``)."""
        self.now += self.rng.expovariate(self.rate)
        weights = self._weights()
        kinds = list(weights)
        while kinds:
            kind = self.rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            action = getattr(self, f"_plan_{kind}")()
            if action is not None:
                return action
            kinds.remove(kind)
        # nothing else is possible (e.g. every user changed presence moments ago): a typing blip
        return self._emit(ActionKind.TYPING_STOP, self._sorted(self.users)[0], channel=self._any_channel())

    def username(self, user_id: str) -> str:
        spec = self.users.get(user_id) or self.bystanders.get(user_id)
        return spec.username if spec else user_id

    def active_users(self) -> list[str]:
        return [u for u in self.users if self.status[u] in _ACTIVE]

    def presence_counts(self) -> dict[str, int]:
        counts = dict.fromkeys([str(s) for s in Status], 0)
        for status in self.status.values():
            counts[str(status)] += 1
        return counts

    def memberships(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(ch.members) for name, ch in self.channels.items()}

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _sorted(items: Iterable[str]) -> list[str]:
        return sorted(items)

    def _any_channel(self) -> str:
        return next(iter(self.channels))

    def _emit(self, kind: ActionKind, actor: str, **fields: Any) -> Action:
        self.seq += 1
        return Action(seq=self.seq, at=self.now, kind=kind, actor=actor, **fields)

    def _new_handle(self) -> str:
        self._handles += 1
        return f"m{self._handles}"

    def _channels_of(self, user: str) -> list[_Channel]:
        return [c for c in self.channels.values() if user in c.members]

    def _weights(self) -> dict[ActionKind, float]:
        weights = dict(_BASE_WEIGHTS)
        active = len(self.active_users())
        target = self.online_target * len(self.users)
        if active == 0:
            return {ActionKind.PRESENCE: 1.0}
        if active < target:
            weights[ActionKind.PRESENCE] *= 1.0 + 2.0 * (target - active) / max(target, 1.0)
        if any(self.now - since > _TYPING_PATIENCE_S for _, since in self.typing.values()):
            weights[ActionKind.TYPING_STOP] *= 6.0
        if any(c.needs_rotation for c in self.channels.values()):
            weights[ActionKind.KEY_SHARE] *= 2.0
        return weights

    def _stop_typing(self, user: str) -> str | None:
        entry = self.typing.pop(user, None)
        return entry[0] if entry else None

    def _pick_message(self, channels: list[_Channel], pred: Any) -> tuple[_Channel, _Message] | None:
        candidates = [(c, m) for c in channels for m in c.recent if pred(m)]
        if not candidates:
            return None
        return candidates[self.rng.randrange(len(candidates))]

    def _notify(self, pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for user, kind in pairs:
            if user in seen:
                continue
            seen.add(user)
            out.append((user, kind))
            self.unread[user] = self.unread.get(user, 0) + 1
        return tuple(out)

    # -- planners: each returns None when its action is impossible right now ---------------------

    def _plan_presence(self) -> Action | None:
        eligible = [u for u in self.users if self.now - self.last_presence[u] >= PRESENCE_SPACING_S]
        if not eligible:
            return None
        active = set(self.active_users())
        target = self.online_target * len(self.users)
        offline = [u for u in eligible if u not in active]
        online = [u for u in eligible if u in active]
        want_up = len(active) < target
        pool = (offline if want_up else online) if self.rng.random() < 0.75 else eligible
        pool = pool or eligible
        user = pool[self.rng.randrange(len(pool))]
        current = self.status[user]
        options = _TRANSITIONS[current]
        new = self.rng.choices([s for s, _ in options], weights=[w for _, w in options])[0]
        stop = None
        if new in (Status.OFFLINE, Status.INVISIBLE):
            stop = self._stop_typing(user)
        self.status[user] = new
        self.last_presence[user] = self.now
        return self._emit(ActionKind.PRESENCE, user, status=new, stop_typing=stop)

    def _plan_typing_start(self) -> Action | None:
        visible = [
            u for u in self.active_users() if self.status[u] != Status.INVISIBLE and u not in self.typing
        ]
        if not visible:
            return None
        user = visible[self.rng.randrange(len(visible))]
        chans = self._channels_of(user)
        if not chans:
            return None
        chan = chans[self.rng.randrange(len(chans))]
        self.typing[user] = (chan.name, self.now)
        return self._emit(ActionKind.TYPING_START, user, channel=chan.name)

    def _plan_typing_stop(self) -> Action | None:
        if not self.typing:
            return None
        typing = self._sorted(self.typing)
        stale = [u for u in typing if self.now - self.typing[u][1] > _TYPING_PATIENCE_S]
        pool = stale or typing
        user = pool[self.rng.randrange(len(pool))]
        channel = self._stop_typing(user)
        return self._emit(ActionKind.TYPING_STOP, user, channel=channel, stop_typing=channel)

    def _plan_message(self) -> Action | None:
        active = self.active_users()
        if not active:
            return None
        typers = [u for u in active if u in self.typing]
        if typers and self.rng.random() < 0.8:
            user = typers[self.rng.randrange(len(typers))]
            chan = self.channels[self.typing[user][0]]
            if user not in chan.members:  # left the channel while typing
                return None
        else:
            user = active[self.rng.randrange(len(active))]
            chans = self._channels_of(user)
            if not chans:
                return None
            # text channels are busier than DMs
            weights = [3.0 if c.kind == "text" else 1.0 for c in chans]
            chan = self.rng.choices(chans, weights=weights)[0]
        stop = self._stop_typing(user) if self.typing.get(user, ("",))[0] == chan.name else None
        others = self._sorted(chan.members - {user})
        notify: list[tuple[str, str]] = []
        users: tuple[str, ...] = ()
        reply_to = None
        if chan.kind == "dm":
            text = _text.dm_message(self.rng)
            notify += [(u, "dm") for u in others]
        elif others and self.rng.random() < 0.25:
            who = others[self.rng.randrange(len(others))]
            text = _text.mention_message(self.rng, self.username(who))
            users = (who,)
            notify.append((who, "mention"))
        else:
            text = _text.text_message(self.rng)
        live = [m for m in chan.recent if not m.deleted]
        if live and self.rng.random() < 0.2:
            parent = live[self.rng.randrange(len(live))]
            reply_to = parent.handle
            if parent.author != user:
                notify.append((parent.author, "reply"))
        msg = _Message(self._new_handle(), user, text)
        chan.recent.append(msg)
        chan.messages_in_session += 1
        if chan.messages_in_session >= 40:
            chan.needs_rotation = True
        return self._emit(
            ActionKind.MESSAGE,
            user,
            channel=chan.name,
            message=msg.handle,
            reply_to=reply_to,
            text=text,
            users=users,
            notify=self._notify(notify),
            stop_typing=stop,
        )

    def _plan_edit(self) -> Action | None:
        active = set(self.active_users())
        hit = self._pick_message(list(self.channels.values()), lambda m: not m.deleted and m.author in active)
        if hit is None:
            return None
        chan, msg = hit
        msg.content = _text.edit_of(self.rng, msg.content)
        return self._emit(
            ActionKind.EDIT, msg.author, channel=chan.name, message=msg.handle, text=msg.content
        )

    def _plan_delete(self) -> Action | None:
        active = set(self.active_users())
        hit = self._pick_message(list(self.channels.values()), lambda m: not m.deleted and m.author in active)
        if hit is None:
            return None
        chan, msg = hit
        msg.deleted = True
        return self._emit(ActionKind.DELETE, msg.author, channel=chan.name, message=msg.handle)

    def _plan_react(self) -> Action | None:
        active = [u for u in self.active_users() if self.status[u] != Status.INVISIBLE]
        if not active:
            return None
        user = active[self.rng.randrange(len(active))]
        hit = self._pick_message(self._channels_of(user), lambda m: not m.deleted)
        if hit is None:
            return None
        chan, msg = hit
        emoji = _text.pick(self.rng, _text.EMOJI)
        if (user, emoji) in msg.reactions:
            return None
        msg.reactions.add((user, emoji))
        notify: tuple[tuple[str, str], ...] = ()
        if msg.author != user and self.rng.random() < 0.3:
            notify = self._notify([(msg.author, "reaction")])
        return self._emit(
            ActionKind.REACT, user, channel=chan.name, message=msg.handle, emoji=emoji, notify=notify
        )

    def _plan_unreact(self) -> Action | None:
        active = set(self.active_users())
        hit = self._pick_message(
            list(self.channels.values()), lambda m: any(u in active for u, _ in m.reactions)
        )
        if hit is None:
            return None
        chan, msg = hit
        mine = sorted(r for r in msg.reactions if r[0] in active)
        user, emoji = mine[self.rng.randrange(len(mine))]
        msg.reactions.discard((user, emoji))
        return self._emit(ActionKind.UNREACT, user, channel=chan.name, message=msg.handle, emoji=emoji)

    def _plan_key_share(self) -> Action | None:
        active = set(self.active_users())
        chans = [c for c in self.channels.values() if c.members & active and len(c.members) > 1]
        if not chans:
            return None
        rotating = [c for c in chans if c.needs_rotation]
        pool = rotating if rotating and self.rng.random() < 0.8 else chans
        chan = pool[self.rng.randrange(len(pool))]
        senders = self._sorted(chan.members & active)
        sender = senders[self.rng.randrange(len(senders))]
        if chan.needs_rotation:
            self._sessions += 1
            chan.session = self._sessions
            chan.needs_rotation = False
            chan.messages_in_session = 0
            recipients = tuple(self._sorted(chan.members - {sender}))
        else:  # re-share the current session with one member (a new device, a lost key)
            others = self._sorted(chan.members - {sender})
            recipients = (others[self.rng.randrange(len(others))],)
        session = f"sess-{chan.name}-{chan.session}"
        key = "b64:" + self.rng.randbytes(24).hex()
        return self._emit(
            ActionKind.KEY_SHARE, sender, channel=chan.name, session=session, users=recipients, text=key
        )

    def _plan_read(self) -> Action | None:
        users = [u for u in self.active_users() if self.unread.get(u, 0) > 0]
        if not users:
            return None
        user = users[self.rng.randrange(len(users))]
        self.unread[user] = 0
        return self._emit(ActionKind.READ, user)

    def _plan_join(self) -> Action | None:
        active = self.active_users()
        if not active:
            return None
        user = active[self.rng.randrange(len(active))]
        options = [c for c in self.channels.values() if c.kind == "text" and user not in c.members]
        if not options:
            return None
        chan = options[self.rng.randrange(len(options))]
        chan.members.add(user)
        chan.needs_rotation = True
        return self._emit(ActionKind.JOIN, user, channel=chan.name)

    def _plan_leave(self) -> Action | None:
        active = self.active_users()
        if not active:
            return None
        user = active[self.rng.randrange(len(active))]
        options = [
            c
            for c in self.channels.values()
            if c.kind == "text" and user in c.members and c.owner != user and len(c.members) > 3
        ]
        if not options:
            return None
        chan = options[self.rng.randrange(len(options))]
        chan.members.discard(user)
        chan.needs_rotation = True
        stop = self._stop_typing(user) if self.typing.get(user, ("",))[0] == chan.name else None
        return self._emit(ActionKind.LEAVE, user, channel=chan.name, stop_typing=stop)

    def _plan_open_dm(self) -> Action | None:
        active = self.active_users()
        if not active:
            return None
        user = active[self.rng.randrange(len(active))]
        partners = {
            m for c in self.channels.values() if c.kind == "dm" and user in c.members for m in c.members
        }
        everyone = self._sorted([*self.users, *self.bystanders])
        options = [u for u in everyone if u != user and u not in partners]
        if not options:
            return None
        other = options[self.rng.randrange(len(options))]
        name = "-".join(sorted((self.username(user), self.username(other))))
        if name in self.channels:
            return None
        self.channels[name] = _Channel(name, "dm", {user, other}, user)
        return self._emit(ActionKind.OPEN_DM, user, channel=name, users=(other,))


def build_world(
    users: int | Iterable[str], *, seed: int | None, exclude: Iterable[str] = ()
) -> tuple[list[UserSpec], list[UserSpec], list[ChannelSpec]]:
    """The simulated users, the bystanders and the channels (seed channels plus extra members).

    ``users`` is a count (the six seed users first, then deterministic extra users) or an explicit
    list of usernames / user ids from the seed. ``exclude`` names seed users (username or id) that
    must not be simulated (e.g. the notebook's own user): they stay as bystanders. Extra users join
    ``general`` and, drawn from ``seed``, some of the other text channels.
    """
    seed_users, channels = seed_world()
    by_key = {u.username: u for u in seed_users} | {u.id: u for u in seed_users}
    excluded: set[str] = set()
    for key in exclude:
        if str(key) not in by_key:
            valid = sorted(u.username for u in seed_users)
            raise ValueError(f"exclude: unknown seed user {key!r}; valid: {valid}")
        excluded.add(by_key[str(key)].id)
    if isinstance(users, int):
        if isinstance(users, bool) or users < 2:
            raise ValueError(f"users must be an int >= 2 or a list of seed usernames; got {users!r}")
        pool = [u for u in seed_users if u.id not in excluded]
        simulated = pool[:users]
        simulated += [extra_user(i) for i in range(users - len(simulated))]
    else:
        keys = [str(k) for k in users]
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise ValueError(
                f"users: unknown seed users {unknown}; valid: {sorted(u.username for u in seed_users)} "
                "(or pass a count to add generated users)"
            )
        simulated = [by_key[k] for k in dict.fromkeys(keys) if by_key[k].id not in excluded]
        if len(simulated) < 2:
            raise ValueError("the simulation needs at least 2 users")
    sim_ids = {u.id for u in simulated}
    bystanders = [u for u in seed_users if u.id not in sim_ids]
    rng = random.Random(f"harmony-world-{seed}") if seed is not None else random.Random()
    extras = [u for u in simulated if u.id not in {s.id for s in seed_users}]
    out: list[ChannelSpec] = []
    for ch in channels:
        members = set(ch.members)
        if ch.kind == "text":
            for u in extras:
                if ch.name == "general" or rng.random() < 0.5:
                    members.add(u.id)
        out.append(ChannelSpec(ch.name, ch.kind, frozenset(members), ch.owner))
    return simulated, bystanders, out
