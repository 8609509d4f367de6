"""The gallery rules every backend applies, written once: wording, namespace, stamps, checks.

A backend supplies the facts inside its own transaction or lock (does the name exist, how many
pictures has the entity, how full is the group) and calls :func:`check_new_picture`; it never
words an error itself. Messages name the group as its owner knows it: the internal key is
``tenant/GroupId`` (:func:`public_group_id` strips the namespace), which must not reach a
tenant through an error message.
"""

from __future__ import annotations

import time

from lookalike import errors


def public_group_id(group_id: str) -> str:
    """The GroupId its owner chose: the internal key without its tenant namespace."""
    return group_id.rpartition("/")[2]


def in_namespace(group_id: str, namespace: str | None) -> bool:
    """Whether ``namespace`` owns ``group_id``: a namespace ("tenant/") owns the ids that start
    with it and contain no further "/"; the empty namespace owns the ids without any "/";
    ``None`` owns every id (migrations)."""
    if namespace is None:
        return True
    return group_id.startswith(namespace) and "/" not in group_id[len(namespace) :]


def stamps(create_time: float, update_time: float, now: float | None = None) -> tuple[float, float]:
    """A record's (create_time, update_time): kept when given (imports keep their times), else
    now; a record without its own update time was last updated when created."""
    created = create_time or (time.time() if now is None else now)
    return created, update_time or created


def group_exists(group_id: str) -> errors.ImageGroupIdAlreadyExist:
    return errors.ImageGroupIdAlreadyExist(f"group {public_group_id(group_id)!r} already exists")


def no_such_group(group_id: str) -> errors.ImageGroupIdNotExist:
    """The one wording of a store's "no such group" (the gallery's own checks come first)."""
    return errors.ImageGroupIdNotExist(f"group {public_group_id(group_id)!r} does not exist")


def picture_exists(group_id: str, pic_name: str) -> errors.PicNameAlreadyExist:
    return errors.PicNameAlreadyExist(f"picture {pic_name!r} already exists in group {public_group_id(group_id)!r}")


def check_new_picture(
    group_id: str,
    pic_name: str,
    entity_id: str,
    *,
    name_taken: bool,
    entity_count: int,
    max_per_entity: int,
    group_count: int | None,
    capacity: int,
) -> None:
    """The three constraints on a new picture, in this order: its name is new in the group, its
    entity has room, the group has room (``capacity`` 0: unlimited). ``group_count=None``: the
    backend checks the capacity itself (with :func:`group_full`), where counting costs a query."""
    if name_taken:
        raise picture_exists(group_id, pic_name)
    if entity_count >= max_per_entity:
        raise errors.ImageEntityCountExceed(
            f"entity {entity_id!r} already has {entity_count} pictures (at most {max_per_entity})"
        )
    if group_count is not None and capacity > 0 and group_count >= capacity:
        raise group_full(group_id, capacity)


def group_full(group_id: str, capacity: int) -> errors.ImageNumExceed:
    return errors.ImageNumExceed(f"group {public_group_id(group_id)!r} is full ({capacity} pictures)")
